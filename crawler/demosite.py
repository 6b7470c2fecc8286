"""A generated demo site on loopback that counts every request it serves.

    python -m crawler.demosite --pages 2000 --port 8000

Serves ``/page/<i>.html`` pages (a tree: page i links to its children
3i+1..3i+3, plus its parent, the home page and one cross link), a shop of
products under ``/shop/`` for the ``products`` spider, and ``robots.txt``.
``/fail/...`` always answers 500; ``/slow/...`` answers after
``slow_seconds``. ``--tree`` leaves only the child links, so every page has
exactly one parent. ``GET /__counts`` returns ``{path: hits}`` as JSON; ``/__reset`` clears it.
Used by the quickstart and the tests.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PAGE = re.compile(r"^/page/(\d+)\.html$")
_CATEGORY = re.compile(r"^/shop/cat/(\d+)/(\d+)\.html$")
_PRODUCT = re.compile(r"^/shop/product/(\d+)\.html$")
PER_PAGE = 10


class Site:
    def __init__(
        self,
        pages: int,
        categories: int = 5,
        products: int = 200,
        tree: bool = False,
        slow_seconds: float = 5.0,
    ) -> None:
        self.pages = pages
        self.tree = tree
        self.slow_seconds = slow_seconds
        self.categories = categories
        self.products = products
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def page(self, i: int) -> str:
        links = [3 * i + k for k in (1, 2, 3) if 3 * i + k < self.pages]
        if not self.tree:  # a tree: each page has exactly one parent linking it
            links += [(i - 1) // 3 if i else 0, 0, (i * 7919 + 13) % self.pages]
        body = "".join(f'<a href="/page/{j}.html">page {j}</a>\n' for j in links)
        return _html(f"Page {i}", f"<h1>Page {i}</h1>\n{body}")

    def shop(self) -> str:
        body = "".join(
            f'<a class="category" href="/shop/cat/{c}/0.html">Category {c}</a>\n'
            for c in range(self.categories)
        )
        return _html("Shop", body)

    def category(self, c: int, p: int) -> str | None:
        skus = [s for s in range(self.products) if s % self.categories == c]
        chunk = skus[p * PER_PAGE : (p + 1) * PER_PAGE]
        if c >= self.categories or not chunk:
            return None
        body = "".join(
            f'<a class="product" href="/shop/product/{s}.html">Product {s}</a>\n' for s in chunk
        )
        if (p + 1) * PER_PAGE < len(skus):
            body += f'<a class="next" href="/shop/cat/{c}/{p + 1}.html">next</a>\n'
        return _html(f"Category {c} page {p}", body)

    def product(self, s: int) -> str | None:
        if s >= self.products:
            return None
        return _html(
            f"Product {s}",
            f'<h1 class="name">Product {s}</h1><span class="sku">SKU-{s:05d}</span>'
            f'<span class="price">${(s * 37) % 1000 / 10 + 1:.2f}</span>'
            f'<span class="category">Category {s % self.categories}</span>',
        )

    def render(self, path: str) -> tuple[int, str, str]:
        if path == "/robots.txt":
            return 200, "text/plain", "User-agent: *\nDisallow: /private/\n"
        if path == "/":
            return (
                200,
                "text/html",
                _html("Home", '<a href="/page/0.html">pages</a> <a href="/shop/">shop</a>'),
            )
        if path.startswith("/fail/"):
            return 500, "text/html", _html("Server error", "always fails")
        if path.startswith("/slow/"):
            time.sleep(self.slow_seconds)
            return 200, "text/html", _html("Slow", "too slow")
        if path == "/shop/":
            return 200, "text/html", self.shop()
        for pattern, render in (
            (_PAGE, lambda m: self.page(int(m[1])) if int(m[1]) < self.pages else None),
            (_CATEGORY, lambda m: self.category(int(m[1]), int(m[2]))),
            (_PRODUCT, lambda m: self.product(int(m[1]))),
        ):
            match = pattern.match(path)
            if match:
                html = render(match)
                if html is not None:
                    return 200, "text/html", html
        return 404, "text/html", _html("Not found", "not found")


def _html(title: str, body: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


def make_handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/__counts":
                with site.lock:
                    status, ctype, text = 200, "application/json", json.dumps(site.counts)
            elif path == "/__reset":
                with site.lock:
                    site.counts.clear()
                status, ctype, text = 200, "text/plain", "ok"
            else:
                with site.lock:
                    site.counts[path] += 1
                status, ctype, text = site.render(path)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    """Crawlers killed mid-request reset connections; that is not an error here."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def serve(host: str, port: int, pages: int, tree: bool = False) -> ThreadingHTTPServer:
    server = QuietServer((host, port), make_handler(Site(pages, tree=tree)))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--tree", action="store_true", help="link each page from one parent only")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.pages, args.tree)
    host, port = server.server_address[:2]
    print(f"http://{host!s}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
