"""A hostile site on a free loopback port: the odd inputs of the open web.

Every request is counted by its request target (path and query as sent),
prefixed with ``//HOST`` when it came for another host name than the base's
(``localhost``, ``127.1``), so a test can compare what was fetched with what
one plain Scrapy process fetches. ``GET /__counts`` is not counted. The
index ``/`` links to every section:

* ``/enc/``: latin-1, cp1252, Shift_JIS, UTF-16, a BOM against the header,
  invalid UTF-8, a wrong or unknown charset header, a ``<meta charset>``
  that differs from the header, no Content-Type, NULs and escape codes;
* ``/api/``: JSON (for ``response.json()``) with lone surrogates, NaN and
  Infinity, huge numbers, deep nesting, a long string, control characters,
  odd keys; truncated JSON, a top-level array, a link with a lone surrogate;
* ``/status/``: 304, 401, 403, 404, 410, 500, 999, 204, an empty 200, a
  302 without a Location; 503 and 429 with ``Retry-After: 1``, a bounded
  number of times;
* ``/redirect/``: loops (60 pairs, 15 linked right after each page that
  answers 503 or 429, so that some are leased when the domain pauses), a
  chain longer than REDIRECT_MAX_TIMES, a short
  chain, another host, a protocol-relative Location, a mailto: Location, a
  meta refresh, raw UTF-8 bytes;
* ``/trap/N`` and ``/grow/a/a/...``: endless link traps (DEPTH_LIMIT bounds them);
* ``/big/``: 3 MB (past DOWNLOAD_WARNSIZE), 6 MB with and without a
  Content-Length (past DOWNLOAD_MAXSIZE), a gzip bomb;
* ``/broken/``: gzip, bad gzip, a short body, a dropped connection, a slow
  page (past DOWNLOAD_TIMEOUT), chunked, close-delimited, binary files
  linked as pages, a price the spider cannot parse, a 12 kB header, a
  ``<base href>``;
* ``/bad/NAME.html``: one odd href (mailto:, javascript:, tel:, ftp:, data:,
  about:, userinfo, an unclosed IPv6 host, a port out of range, https: to
  this plain-HTTP port) between two plain links;
* ``/odd/`` and ``/hosts/``: any path answers, for URLs with spaces,
  unicode, percent-escapes, fragments, query orders, over-long URLs, host
  variants (``localhost`` in capitals and in fullwidth letters, whose
  robots.txt redirects to 127.0.0.1's; ``127.1``, whose robots.txt answers
  500); ``/many.html``: 300 links to 100 pages;
  ``/cookies/set`` and the pages it links, which say whether the cookie
  came back; ``/private/`` (robots.txt denies it).

Run it alone with ``python -m tests.hostile_site``.
"""

from __future__ import annotations

import gzip
import http
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from crawler.demosite import QuietServer

UTF8 = "text/html; charset=utf-8"
JSON = "application/json"
MB = 1024 * 1024
SLOW_SECONDS = 4.0
TRAP_END = 1000  # far past any DEPTH_LIMIT: endless for a crawler
#: Paths that fail this many times (with Retry-After: 1), then answer 200.
BOUNDED_FAILURES = {
    "/status/503": 2,
    "/status/429": 1,
    "/status/503-again": 1,
    "/status/429-again": 1,
}
NESTED_DEEP = 600  # deeper than ItemAdapter.asdict recurses, not than json.dumps
COOKIE_CHECKS = 20
#: "localhost" in fullwidth letters (U+FF4C ...), which IDNA folds to ASCII.
FULLWIDTH_LOCALHOST = "".join(chr(ord(c) + 0xFEE0) for c in "localhost")
MANY = 100  # /many.html links each of /many/0..99 three times


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    ctype: str | None = UTF8
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: "short" body, "drop" the connection, "chunked", "stream" for ever,
    #: "close": no Content-Length, the body ends when the connection closes.
    mode: str = ""
    delay: float = 0.0


@dataclass
class Hit:
    """One request as the site sees it; *nth*: how many times its key was hit."""

    target: str
    host: str
    cookie: str
    nth: int


def page(title: str, body: str = "", head: str = "") -> str:
    head = f"<head>{head}<title>{title}</title></head>"
    return f"<!doctype html><html>{head}<body>{body}</body></html>"


def html(
    title: str,
    body: str = "",
    head: str = "",
    status: int = 200,
    headers: list[tuple[str, bytes]] | None = None,
    mode: str = "",
    delay: float = 0.0,
) -> Answer:
    data = page(title, body, head).encode()
    return Answer(status, data, UTF8, headers or [], mode, delay)


def links(hrefs: list[str]) -> str:
    return "".join(f'<a href="{h}">{h[:40]}</a>\n' for h in hrefs)


def raw_json(text: str) -> Answer:
    """JSON exactly as written: escapes such as ``\\ud83d`` stay escapes."""
    return Answer(body=text.encode(), ctype=JSON)


def encoded(title: str, codec: str, ctype: str | None, head: str = "") -> Answer:
    return Answer(body=page(title, f"<p>{title}</p>", head).encode(codec), ctype=ctype)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


ENC: dict[str, Callable[[], Answer]] = {
    "latin1.html": lambda: encoded(
        "Café crème latin-1", "latin-1", "text/html; charset=iso-8859-1"
    ),
    "cp1252.html": lambda: encoded(
        "“Smart” quotes \u2013 €5 …", "cp1252", "text/html; charset=windows-1252"
    ),
    "sjis.html": lambda: encoded("日本語のページ", "shift_jis", "text/html; charset=shift_jis"),
    "utf16.html": lambda: encoded("UTF-16 Ünïcödé", "utf-16", "text/html"),
    "wrong-header.html": lambda: encoded("Café mislabelled latin-1", "latin-1", UTF8),
    "unknown-charset.html": lambda: encoded(
        "Café unknown charset", "utf-8", "text/html; charset=x-no-such-charset"
    ),
    "bom.html": lambda: Answer(
        body=b"\xef\xbb\xbf" + page("Café BOM").encode(), ctype="text/html; charset=iso-8859-1"
    ),
    "invalid-utf8.html": lambda: Answer(
        body=page("Invalid \xff\xfe UTF-8", "\xc3( \xed\xa0\xbd").encode("latin-1"), ctype=UTF8
    ),
    "meta-differs.html": lambda: encoded(
        "Café meta says latin-1", "utf-8", UTF8, head='<meta charset="iso-8859-1">'
    ),
    "meta-only.html": lambda: encoded(
        "“Meta” only \u2013 cp1252",
        "cp1252",
        "text/html",
        head='<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
    ),
    "no-content-type.html": lambda: Answer(body=page("No Content-Type").encode(), ctype=None),
    "nul.html": lambda: Answer(body=page("Control \x00\x07\x1b[31m chars", "NUL \x00").encode()),
}

API: dict[str, Callable[[], Answer]] = {
    "surrogate.json": lambda: raw_json(
        '{"name": "cut emoji \\ud83d", "pair": "\\ud83d\\ude00", "low": "\\udca9 alone", '
        '"\\ud83d key": "a lone surrogate in a key"}'
    ),
    "nan.json": lambda: raw_json(
        '{"nan": NaN, "inf": Infinity, "ninf": -Infinity, "overflow": 1e400, "tiny": 5e-324}'
    ),
    "bigint.json": lambda: raw_json(
        '{"huge": 123456789012345678901234567890123456789, "negative": -1' + "0" * 40 + "}"
    ),
    "too-many-digits.json": lambda: raw_json('{"n": ' + "9" * 5000 + "}"),
    "nested.json": lambda: raw_json('{"nested": ' + nested(50) + "}"),
    "nested-deep.json": lambda: raw_json('{"deep": ' + nested(NESTED_DEEP) + "}"),
    "long.json": lambda: raw_json(json.dumps({"long": "x" * 600_000})),
    "control.json": lambda: raw_json(
        '{"ctl": "\\u0000\\u0001\\u001b[31mred\\u007f", "lines": "a\\nb\\r\\nc", '
        '"bidi": "\\u202e reversed", "zero_width": "a\\u200bb", "bom": "\\ufeff"}'
    ),
    "keys.json": lambda: raw_json(
        '{"a.b": 1, "$set": 2, "": 3, "with space": 4, "\\u00fcn\\u00ef": 5, '
        '"1numeric": 6, "__proto__": 7, "x": {"$ref": "#", "a.b.c": [null, true]}}'
    ),
    "truncated.json": lambda: raw_json('{"name": "cut'),
    "top-level-list.json": lambda: raw_json('[{"a": 1}, {"a": 2}]'),
    # The good link is followed; the lone surrogate makes Request() raise in
    # the callback, so the link after it is never seen.
    "bad-link.json": lambda: raw_json(
        '{"links": ["/api/after-good.json", "/api/x?name=\\ud83d", "/api/never.json"]}'
    ),
    "after-good.json": lambda: raw_json('{"after": "a good link before a bad one"}'),
}
#: What /api/list.json links to, with a lone surrogate in its "label".
API_LISTED = [name for name in API if name not in ("after-good.json", "bad-link.json")]

BROKEN: dict[str, Callable[[], Answer]] = {
    "gzip.html": lambda: Answer(
        body=gzip.compress(page("gzipped page").encode()), headers=[("Content-Encoding", b"gzip")]
    ),
    "bad-gzip.html": lambda: html("not gzip at all", headers=[("Content-Encoding", b"gzip")]),
    "short-body.html": lambda: html("cut short", "x" * 1000, mode="short"),
    "drop.html": lambda: Answer(mode="drop"),
    "slow.html": lambda: html("too slow", delay=SLOW_SECONDS),
    "chunked.html": lambda: html("chunked", "in chunks", mode="chunked"),
    "image.png": lambda: Answer(body=_png(), ctype="image/png"),
    "png-as-html.html": lambda: Answer(body=_png(), ctype=UTF8),
    "doc.pdf": lambda: Answer(
        body=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n", ctype="application/pdf"
    ),
    # The spider's float() of the price raises: the page's links were
    # followed before it did, its item is lost.
    "price.html": lambda: html(
        "bad price", '<span class="price">N/A</span>' + links(["/odd/after-bad-price"])
    ),
    "huge-header.html": lambda: html("huge header", headers=[("X-Padding", b"p" * 12000)]),
    "close-delimited.html": lambda: html("ends when the connection closes", mode="close"),
    "base-href.html": lambda: html("base href", links(["child"]), head='<base href="/odd/based/">'),
}

#: /redirect/NAME -> Location (the chain and the landing pages are computed).
REDIRECTS: dict[str, bytes] = {
    "loop-a": b"/redirect/loop-b",
    "loop-b": b"/redirect/loop-a",
    "self": b"/redirect/self",
    "short-1": b"/redirect/short-2",
    "short-2": b"/redirect/short-3",
    "short-3": b"/redirect/landed-short.html",
    "other-host": b"http://localhost:{port}/redirect/landed-localhost.html",
    "to-mailto": b"mailto:someone@example.com",
    "relative": b"../enc/latin1.html",
    "protocol-relative": b"//localhost:{port}/redirect/landed-protocol-relative.html",
    "utf8-bytes": "/redirect/landed-ü.html".encode(),
}
#: /redirect/chain/1 -> 2 -> ... -> 25 -> landed: past REDIRECT_MAX_TIMES (20).
CHAIN_END = 25
LOOPS = 60  # /redirect/loop/N-a <-> /redirect/loop/N-b
#: /bad/NAME.html holds this href between two plain links.
BAD_HREFS = {
    "userinfo": "http://user:secret@127.0.0.1:{port}/hosts/userinfo",
    "mailto": "mailto:someone@example.com",
    "javascript": "javascript:void(0)",
    "tel": "tel:+15551234567",
    "ftp": "ftp://127.0.0.1:{closed}/file.txt",
    "data": "data:text/html,%3Ctitle%3Ea%20data%3A%20URL%3C%2Ftitle%3E",
    "about": "about:blank",
    "ipv6-unclosed": "http://[::1",
    "no-host": "http:///odd/no-host",
    "port-out-of-range": "http://127.0.0.1:99999/odd/port",
    "https": "https://127.0.0.1:{port}/odd/tls-to-a-plain-port",
}


class HostileSite:
    """Renders the hostile pages and counts the requests for them."""

    def __init__(self, port: int, closed_port: int) -> None:
        self.port = port
        self.netloc = f"127.0.0.1:{port}"
        self.closed_port = closed_port  # nothing listens there: ftp:// is refused
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, target: str, host: str) -> int:
        key = target if host == self.netloc else f"//{host}{target}"
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]

    def render(self, hit: Hit) -> Answer:
        path = urlsplit(hit.target).path
        section, _, rest = path[1:].partition("/")
        sections: dict[str, Callable[[], Answer]] = {
            "": self.index,
            "robots.txt": lambda: self.robots(hit.host),
            "many.html": lambda: self.many(),
            "many": lambda: html(f"many {int(rest)}"),
            "enc": lambda: ENC[rest](),
            "api": lambda: self.api(rest),
            "status": lambda: self.status(rest, hit.nth),
            "redirect": lambda: self.redirect(rest),
            "trap": lambda: self.trap(int(rest)),
            "grow": lambda: html(f"grow {path.count('/a')}", links(["a/", "/"])),
            "big": lambda: BIG[rest](),
            "bad": lambda: self.bad_href(rest),
            "broken": lambda: BROKEN[rest](),
            "cookies": lambda: self.cookies(rest, hit.cookie),
            "odd": lambda: html(f"odd {unquote(path, errors='replace')}"),
            "hosts": lambda: html(f"host {hit.host.split(':')[0]} {rest}"),
        }
        try:
            return sections[section]()
        except (KeyError, ValueError):
            return Answer(404, page("Not found").encode())

    def robots(self, host: str) -> Answer:
        if host.startswith("127.1:"):  # a broken robots.txt: Scrapy retries it, then allows all
            return html("robots.txt is broken", status=500)
        if host.startswith("localhost:"):  # as robots.txt on example.com -> www.example.com
            return Answer(302, headers=[("Location", f"http://{self.netloc}/robots.txt".encode())])
        return Answer(body=b"User-agent: *\nDisallow: /private/\n", ctype="text/plain")

    def many(self) -> Answer:
        """Many links, most of them duplicates (fragments, repeats)."""
        hrefs = [f"/many/{n}{tail}" for tail in ("", "#a", "#b") for n in range(MANY)]
        return html("many links", links(hrefs))

    def index(self) -> Answer:
        hrefs = [f"/enc/{name}" for name in ENC] + ["/api/list.json", "/api/bad-link.json"]
        hrefs += [f"/status/{s}" for s in ("304", "401", "403", "404", "410", "500", "999")]
        hrefs += ["/status/204", "/status/empty"]
        # Redirect loops right after the pages that pause the domain: a node
        # holds back the requests it leased before a pause, and these may be among them.
        per = LOOPS // len(BOUNDED_FAILURES)
        for i, failing in enumerate(BOUNDED_FAILURES):
            hrefs += [failing, *(f"/redirect/loop/{n}-a" for n in range(i * per, (i + 1) * per))]
        hrefs += ["/status/302-no-location"]
        hrefs += [f"/redirect/{name}" for name in REDIRECTS]
        hrefs += ["/redirect/chain/1", "/redirect/meta-refresh.html", "/trap/1", "/grow/a/"]
        hrefs += [f"/big/{name}" for name in BIG] + [f"/broken/{name}" for name in BROKEN]
        hrefs += ["/cookies/set", "/private/secret.html", "/many.html", *self.odd_links()]
        return html("Hostile index", links(hrefs + [f"/bad/{name}.html" for name in BAD_HREFS]))

    def bad_href(self, name: str) -> Answer:
        """A page with one odd href between two plain links. Where the odd one
        makes ``response.follow`` raise (mailto:, an unclosed IPv6 host), the
        callback stops there: the link before it is followed, not the one after."""
        href = BAD_HREFS[name.removesuffix(".html")].format(port=self.port, closed=self.closed_port)
        return html(f"bad href {name}", links([f"/odd/before-{name}", href, f"/odd/after-{name}"]))

    def odd_links(self) -> list[str]:
        port = self.port
        return [
            "/odd/with space.html",
            "/odd/ünïcödé.html",
            "/odd/%E2%9C%93-escaped.html",
            "/odd/✓-escaped.html",  # the same URL once encoded
            "/odd/%7Etilde",
            "/odd/~tilde",  # the same once canonicalized
            "/odd/CASE.html",
            "/odd/case.html",
            "/odd/bad-escape?x=%zz&y=%",
            "/odd/dup?a=1&b=2",
            "/odd/dup?b=2&a=1",
            "/odd/dup?a=1&b=2#fragment",
            "/odd/dup#top",
            "#just-a-fragment",
            "",
            "   /odd/padded.html \n ",
            "/odd/" + "y" * 1900,  # long, but under URLLENGTH_LIMIT (2083)
            "/odd/" + "z" * 3100,  # over it
            "/odd/q?" + "&".join(f"k{i}=v{i}" for i in range(400)),  # over it by its query
            f"http://localhost:{port}/hosts/same",
            f"http://LOCALHOST:{port}/hosts/same",
            f"http://{FULLWIDTH_LOCALHOST}:{port}/hosts/same",  # IDNA maps it to localhost
            f"http://127.1:{port}/hosts/short-ip",
            f"HTTP://127.0.0.1:{port}/odd/upper-case-scheme",
            f"//127.0.0.1:{port}/odd/protocol-relative",
        ]

    def api(self, name: str) -> Answer:
        if name == "list.json":
            listed = ", ".join(f'"/api/{n}"' for n in API_LISTED)
            return raw_json(f'{{"label": "cut emoji \\ud83d", "links": [{listed}]}}')
        return API[name]()

    def status(self, name: str, nth: int) -> Answer:
        bounded = BOUNDED_FAILURES.get(f"/status/{name}")
        if bounded is not None:
            if nth > bounded:
                return html(f"{name} answered after {bounded} failures")
            return html("Busy", status=int(name[:3]), headers=[("Retry-After", b"1")])
        if name == "empty":
            return Answer(body=b"")
        if name in ("204", "304"):
            # Never a body: a client does not read one, so the bytes would be
            # taken for the next answer on the keep-alive connection.
            return Answer(int(name), ctype=None)
        if name == "302-no-location":
            return html("Found, but where?", status=302)
        return html(f"Status {name}", status=int(name))

    def redirect(self, name: str) -> Answer:
        if name in REDIRECTS:
            location = REDIRECTS[name].replace(b"{port}", str(self.port).encode())
        elif name.startswith("loop/"):
            pair, side = name.removeprefix("loop/").split("-")
            location = f"/redirect/loop/{pair}-{'b' if side == 'a' else 'a'}".encode()
        elif name.startswith("chain/"):
            hop = int(name.removeprefix("chain/"))
            after = f"chain/{hop + 1}" if hop < CHAIN_END else "landed-chain.html"
            location = f"/redirect/{after}".encode()
        elif name == "meta-refresh.html":
            refresh = '<meta http-equiv="refresh" content="0; url=refreshed.html">'
            return html("refresh", head=refresh)
        else:
            return html(f"landed {unquote(name, errors='replace')}")
        return Answer(302, headers=[("Location", location)])

    def trap(self, n: int) -> Answer:
        if not 0 < n < TRAP_END:
            raise KeyError(n)
        return html(f"trap {n}", links([f"/trap/{n + 1}", "/"]))

    def cookies(self, name: str, cookie: str) -> Answer:
        if name == "set":
            checks = links([f"/cookies/check/{i}" for i in range(COOKIE_CHECKS)])
            return html("cookie set", checks, headers=[("Set-Cookie", b"session=s3cr3t; Path=/")])
        seen = "yes" if "session=s3cr3t" in cookie else "no"
        return html(f"{name}: cookie {seen}")


BIG: dict[str, Callable[[], Answer]] = {
    "3mb.html": lambda: html("three megabytes", "<p>" + "lorem ipsum " * (3 * MB // 12) + "</p>"),
    "6mb.html": lambda: Answer(body=b"x" * (6 * MB), ctype="text/plain"),
    "6mb-chunked.html": lambda: Answer(body=b"x" * (64 * 1024), ctype="text/plain", mode="stream"),
    "bomb.html": lambda: Answer(
        body=gzip.compress(page("bomb", "0" * (20 * MB)).encode(), 9),
        headers=[("Content-Encoding", b"gzip")],
    ),
}


def make_handler(site: HostileSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/__counts":
                with site.lock:
                    counts = json.dumps(site.counts).encode()
                write(self, Answer(body=counts, ctype=JSON))
                return
            host = self.headers.get("Host", "")
            nth = site.count(self.path, host)
            hit = Hit(self.path, host, self.headers.get("Cookie", ""), nth)
            write(self, site.render(hit))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def write(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
    """Send *answer* byte for byte, misbehaving as its mode says."""
    time.sleep(answer.delay)
    if answer.mode == "drop":
        handler.close_connection = True
        return
    try:
        phrase = http.HTTPStatus(answer.status).phrase
    except ValueError:
        phrase = "Unknown"
    head = [f"HTTP/1.1 {answer.status} {phrase}".encode()]
    if answer.ctype:
        head.append(f"Content-Type: {answer.ctype}".encode())
    head += [name.encode() + b": " + value for name, value in answer.headers]
    body = answer.body
    if answer.mode in ("chunked", "stream"):
        head.append(b"Transfer-Encoding: chunked")
    elif answer.status not in (204, 304) and answer.mode != "close":
        extra = 5000 if answer.mode == "short" else 0
        head.append(f"Content-Length: {len(body) + extra}".encode())
    if answer.mode in ("short", "stream", "close"):
        head.append(b"Connection: close")
        handler.close_connection = True
    handler.wfile.write(b"\r\n".join(head) + b"\r\n\r\n")
    if answer.mode == "chunked":
        half = len(body) // 2
        body = b"".join(_chunk(part) for part in (body[:half], body[half:], b""))
    elif answer.mode == "stream":
        # Endless: the crawler gives up once past its DOWNLOAD_MAXSIZE.
        for _ in range(10 * MB // len(body)):
            handler.wfile.write(_chunk(body))
        body = _chunk(b"")
    handler.wfile.write(body)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class HostileServer:
    """The hostile site served on 127.0.0.1 in a thread."""

    def __init__(self, closed_port: int) -> None:
        self.server = QuietServer(("127.0.0.1", 0), make_handler(HostileSite(0, 0)))
        port = self.server.server_address[1]
        self.site = HostileSite(port, closed_port)
        self.server.RequestHandlerClass = make_handler(self.site)
        self.base = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def counts(self) -> dict[str, int]:
        with self.site.lock:
            return dict(self.site.counts)

    def take_counts(self) -> dict[str, int]:
        """The counts so far, and start counting afresh (bounded failures too)."""
        with self.site.lock:
            counts = dict(self.site.counts)
            self.site.counts.clear()
        return counts

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    server = HostileServer(closed_port=9)
    print(server.base, flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()
