"""The site the spider zoo (tests/zoo/) crawls, on a free loopback port.

Every request is counted by its path and query (``/crawl/item.php?id=3``), so
a test can compare what was fetched with what one plain Scrapy process
fetches. ``GET /__counts`` is not counted. Sections, one per kind of spider:

* ``/crawl/``: Scrapy's CrawlSpider example (``category.php``, ``item.php``,
  a ``subsection.php`` the rules deny, ``print=1`` links ``process_links``
  drops, an item that answers 404 and one that answers 500);
* ``/robots.txt`` (with a ``Sitemap:`` line), a sitemap index, two shop
  sitemaps (one gzipped), a blog sitemap, ``/shop/N.html``, ``/about.html``;
* ``/feed.xml`` and ``/feed.csv``;
* ``/h3/N.html`` (the ``start()`` example), ``/carry/N.html`` (data passed to
  callbacks), ``/redis/N.html`` and ``/tree/N.html`` (scrapy-redis spiders),
  ``/again/N.html`` (a page fetched again for another callback),
  ``/wall/N.html`` (a root that first redirects to itself),
  ``/bandwidth/N.html`` (slow; one page makes the spider raise CloseSpider),
  ``/poll/`` (links to a gone page and two robots.txt disallows) and
  ``/poll/live`` (a page read again on purpose).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from crawler.demosite import QuietServer

CATEGORIES = 3
ITEMS_PER_CATEGORY = 4
ITEMS = CATEGORIES * ITEMS_PER_CATEGORY
SHOPS = 20
BLOG_POSTS = 5
FEED_ROWS = 10
H3_PAGES = 15
CARRY_PAGES = 20
REDIS_PAGES = 10
TREE_PAGES = 20
AGAIN_PAGES = 7
WALL_PAGES = 5
BANDWIDTH_PAGES = 120
BANDWIDTH_PAGE = 6  # says "Bandwidth exceeded" while ZooSite.exceeded
BANDWIDTH_LATENCY = 0.2

XML, HTML, TEXT, CSV = "text/xml", "text/html", "text/plain", "text/csv"
Answer = tuple[int, str, bytes]


def html(title: str, body: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


def links(hrefs: list[str]) -> str:
    return "".join(f'<a href="{h}">link {h}</a>\n' for h in hrefs)


def urlset(locs: list[str]) -> str:
    body = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'
    )


def sitemapindex(locs: list[str]) -> str:
    body = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</sitemapindex>'
    )


def feed_xml() -> str:
    items = "".join(
        f'<item id="{i}"><name>Name {i}</name><description>Description {i}</description></item>'
        for i in range(1, FEED_ROWS + 1)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<rss><channel>{items}</channel></rss>'


def feed_csv() -> str:
    # No header row: the spider names the columns. Quoted fields may hold ';'.
    return "".join(
        f"{i};'Name {i}';'Description {i}; with a semicolon'\n" for i in range(1, FEED_ROWS + 1)
    )


class ZooSite:
    """Renders the zoo's pages; knows its own base URL for absolute links."""

    def __init__(self) -> None:
        self.base = ""
        self.exceeded = True  # see bandwidth()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def render(self, target: str) -> Answer:
        parts = urlsplit(target)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        for prefix, section in self._sections():
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                answer = section(path[len(prefix) :], query)
                if answer is not None:
                    return answer
        return 404, HTML, html("Not found", "not found").encode()

    def _sections(self) -> list[tuple[str, Callable[[str, dict[str, str]], Answer | None]]]:
        return [
            ("/robots.txt", lambda _p, _q: (200, TEXT, self.robots().encode())),
            ("/crawl/", self.crawl),
            ("/sitemap_index.xml", lambda _p, _q: self.xml(sitemapindex(self.sitemaps()))),
            ("/sitemap_shops.xml", lambda _p, _q: self.xml(urlset(self.shop_locs(0, 10)))),
            ("/sitemap_shops_more.xml.gz", lambda _p, _q: self.gz_sitemap()),
            ("/sitemap_blog.xml", lambda _p, _q: self.xml(urlset(self.blog_locs()))),
            ("/shop/", lambda p, _q: self.numbered(p, SHOPS, "Shop")),
            ("/blog/", lambda p, _q: self.numbered(p, BLOG_POSTS, "Blog")),
            ("/about.html", lambda _p, _q: (200, HTML, html("About", "about").encode())),
            ("/feed.xml", lambda _p, _q: self.xml(feed_xml())),
            ("/feed.csv", lambda _p, _q: (200, CSV, feed_csv().encode())),
            ("/h3/", lambda p, _q: self.tree(p, "h3", H3_PAGES, first=1)),
            # No links back to the start URL (carry) or seed (tree): plain
            # Scrapy does not put start requests in its seen-set (dont_filter)
            # and fetches them again when linked; tests/test_realsite.py
            # checks that case.
            ("/carry/", lambda p, _q: self.tree(p, "carry", CARRY_PAGES, back=False)),
            ("/redis/", lambda p, _q: self.numbered(p, REDIS_PAGES, "Redis page")),
            ("/tree/", lambda p, _q: self.tree(p, "tree", TREE_PAGES, back=False)),
            # Links back to the start URL: fetched twice, as plain Scrapy does.
            # The start URL redirects to the root (as a site does to add a
            # trailing slash): plain Scrapy's redirect keeps dont_filter.
            ("/again/start", lambda _p, _q: (301, HTML, b"/again/0.html")),
            ("/again/", lambda p, _q: self.tree(p, "again", AGAIN_PAGES)),
            ("/wall/", lambda p, _q: self.wall(p)),
            ("/bandwidth/", lambda p, _q: self.bandwidth(p)),
            ("/poll/", lambda p, _q: self.poll(p)),
        ]

    def wall(self, name: str) -> Answer | None:
        """A tree whose root answers its first request with a redirect to
        itself (a cookie wall: set a cookie, come back)."""
        if name == "0.html" and self.counts["/wall/0.html"] == 1:
            return 302, HTML, b"/wall/0.html"
        return self.tree(name, "wall", WALL_PAGES)

    def bandwidth(self, name: str) -> Answer | None:
        """A tree of slow pages; one says "Bandwidth exceeded" while
        ``exceeded`` (Scrapy's CloseSpider example)."""
        time.sleep(BANDWIDTH_LATENCY)
        answer = self.tree(name, "bandwidth", BANDWIDTH_PAGES, back=False)
        if answer is None or name != f"{BANDWIDTH_PAGE}.html" or not self.exceeded:
            return answer
        status, ctype, body = answer
        return status, ctype, body.replace(b"<h3>", b"<p>Bandwidth exceeded</p><h3>")

    @staticmethod
    def poll(name: str) -> Answer | None:
        if name == "":
            return 200, HTML, html("Poll", links(["gone", "/private/1", "/private/2"])).encode()
        if name == "live":
            return 200, HTML, html("Live", '<p class="score">2-1</p>').encode()
        return None

    def robots(self) -> str:
        return f"User-agent: *\nDisallow: /private/\nSitemap: {self.base}/sitemap_index.xml\n"

    def sitemaps(self) -> list[str]:
        names = ("sitemap_shops.xml", "sitemap_shops_more.xml.gz", "sitemap_blog.xml")
        return [f"{self.base}/{name}" for name in names]

    def shop_locs(self, start: int, stop: int) -> list[str]:
        return [f"{self.base}/shop/{i}.html" for i in range(start, stop)]

    def blog_locs(self) -> list[str]:
        return [f"{self.base}/blog/{i}.html" for i in range(BLOG_POSTS)]

    def gz_sitemap(self) -> Answer:
        # Listed again in the plain sitemap: fetched once all the same.
        locs = [*self.shop_locs(10, SHOPS), f"{self.base}/shop/3.html", f"{self.base}/about.html"]
        return 200, "application/x-gzip", gzip.compress(urlset(locs).encode())

    @staticmethod
    def xml(text: str) -> Answer:
        return 200, XML, text.encode()

    @staticmethod
    def number(name: str, count: int, first: int = 0) -> int | None:
        stem = name.removesuffix(".html")
        if stem == name or not stem.isdigit() or not first <= int(stem) < first + count:
            return None
        return int(stem)

    def numbered(self, name: str, count: int, title: str) -> Answer | None:
        i = self.number(name, count)
        if i is None:
            return None
        return 200, HTML, html(f"{title} {i}", f"<h1>{title} {i}</h1>").encode()

    def tree(
        self, name: str, section: str, count: int, first: int = 0, back: bool = True
    ) -> Answer | None:
        """Page i links to its children 2i+1, 2i+2 (2i, 2i+1 from 1), and
        with *back* to its parent and the root."""
        i = self.number(name, count, first)
        if i is None:
            return None
        kids = [2 * i + k + (1 - first) for k in (0, 1)]
        hrefs = [f"/{section}/{j}.html" for j in kids if j < first + count]
        if back:
            parent = max(first, (i - 1 + first) // 2)
            hrefs += [f"/{section}/{parent}.html", f"/{section}/{first}.html"]
        body = f"<h3>Heading {i}</h3>\n{links(hrefs)}"
        return 200, HTML, html(f"{section} {i}", body).encode()

    def crawl(self, rest: str, query: dict[str, str]) -> Answer | None:
        page = {
            "": self.crawl_home,
            "category.php": self.category,
            "item.php": self.item,
            "additional.php": self.additional,
        }.get(rest)
        return page(query) if page else None

    def crawl_home(self, _query: dict[str, str]) -> Answer:
        hrefs = [f"category.php?id={c}" for c in range(CATEGORIES)] + ["subsection.php?id=0"]
        return 200, HTML, html("Crawl home", links(hrefs)).encode()

    def category(self, query: dict[str, str]) -> Answer | None:
        c = query.get("id", "")
        if not c.isdigit() or int(c) >= CATEGORIES:
            return None
        first = int(c) * ITEMS_PER_CATEGORY
        ids = range(first, first + ITEMS_PER_CATEGORY)
        hrefs = [f"item.php?id={i}" for i in ids] + [f"item.php?id={first}&print=1"]
        hrefs.append("subsection.php?id=1")
        if c == "0":
            hrefs += ["item.php?id=missing", "item.php?id=broken"]
        return 200, HTML, html(f"Category {c}", links(hrefs)).encode()

    def item(self, query: dict[str, str]) -> Answer | None:
        i = query.get("id", "")
        if i == "broken":
            return 500, HTML, html("Server error", "broken").encode()
        if not i.isdigit() or int(i) >= ITEMS or "print" in query:
            return None
        related = f"item.php?id={(int(i) + 1) % ITEMS}"
        body = (
            f'<table><tr><td id="item_id">ID: {i}</td><td id="item_name">Item {i}</td>'
            f'<td id="item_description">Description of item {i}</td>'
            f'<td id="additional_data" href="additional.php?id={i}">more</td></tr></table>'
            # The same link text as on the category page: Rule puts it in
            # meta["link_text"], and either page may be the one it is found on.
            + links([related])
        )
        return 200, HTML, html(f"Item {i}", body).encode()

    def additional(self, query: dict[str, str]) -> Answer | None:
        i = query.get("id", "")
        if not i.isdigit() or int(i) >= ITEMS:
            return None
        body = f'<p id="additional_data">Additional data {i}</p>'
        return 200, HTML, html(f"Additional {i}", body).encode()


def make_handler(site: ZooSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/__counts":
                with site.lock:
                    status, ctype, data = 200, "application/json", json.dumps(site.counts).encode()
            else:
                with site.lock:
                    site.counts[self.path] += 1
                status, ctype, data = site.render(self.path)
            self.send_response(status)
            if 300 <= status < 400:  # a redirect's answer is its Location
                self.send_header("Location", data.decode())
                data = b""
            charset = "" if ctype.startswith("application/x-gzip") else "; charset=utf-8"
            self.send_header("Content-Type", ctype + charset)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class ZooServer:
    """The zoo site served on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self.site = ZooSite()
        self.server = QuietServer(("127.0.0.1", 0), make_handler(self.site))
        self.base = self.site.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def counts(self) -> dict[str, int]:
        with self.site.lock:
            return dict(self.site.counts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
