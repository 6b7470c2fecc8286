"""HTTP servers on their own loopback addresses (127.0.0.2, 127.0.0.3, ...),
each a separate domain to Scrapy, that record when every request arrived and
how many were in progress at once."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from itertools import pairwise

from crawler.demosite import QuietServer


@dataclass
class Hit:
    path: str
    arrived: float  # when the request's first bytes reached this machine
    finished: float
    status: int
    handled: float = 0.0  # when the server's thread began on it (time.time())


# Linux's SO_TIMESTAMP (and SCM_TIMESTAMP), which Python's socket module does
# not name: the kernel stamps each packet with the time it was received.
_SO_TIMESTAMP = 29
_TIMEVAL = struct.Struct("@ll")


def stamp_arrivals(conn: socket.socket) -> None:
    """Have the kernel stamp what *conn* (or, a listening socket, what each
    connection it accepts) receives; see kernel_arrival."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMP, 1)
    except OSError:
        pass


def kernel_arrival(conn: socket.socket) -> float | None:
    """Wait for *conn*'s next bytes and return when they reached this machine
    (time.time()'s clock), leaving them to be read; None where the kernel does
    not say. A server thread's own clock reading comes later by however long
    the thread waited to run: the pytest process's GIL, its garbage collector,
    2 cores shared with 3 nodes. That would shorten the gap after it."""
    try:
        _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(_TIMEVAL.size), socket.MSG_PEEK)
    except OSError:
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMP and len(data) >= _TIMEVAL.size:
            seconds, micros = _TIMEVAL.unpack(data[: _TIMEVAL.size])
            return seconds + micros / 1e6
    return None


def send_html(
    handler: BaseHTTPRequestHandler, status: int, body: str, headers: dict[str, str]
) -> None:
    """Answer *handler*'s request with an HTML *body* (none for a 304)."""
    data = body.encode()
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if status != 304:
        handler.wfile.write(data)


class HostSite:
    """A tree of pages on ``host``: page i links to pages 3i+1..3i+3; page 0
    also links to /private/secret.html (disallowed by robots.txt)."""

    def __init__(
        self,
        host: str,
        pages: int,
        latency: float = 0.0,
        robots: str = "User-agent: *\nDisallow: /private/\n",
        throttle: dict[str, str] | None = None,
        broken: frozenset[str] = frozenset(),
        redirects: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        # path -> URL: answered 301 to it.
        self.redirects = dict(redirects or {})
        self.pages = pages
        self.latency = latency
        self.robots = robots
        # path -> Retry-After value ("" for none): answered 429 the first time.
        self.throttle = dict(throttle or {})
        # Paths answered 503 (no Retry-After) every time: a broken page.
        self.broken = broken
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            received: float | None = None

            def handle_one_request(self) -> None:
                # Scrapy sends a connection's next request only after the
                # last response, so nothing of it is buffered here yet.
                self.received = kernel_arrival(self.connection)
                super().handle_one_request()

            def do_GET(self) -> None:
                handled = time.time()
                arrived = min(self.received or handled, handled)
                path = self.path.split("?", 1)[0]
                with site.lock:
                    site.inflight += 1
                    site.max_inflight = max(site.max_inflight, site.inflight)
                    retry_after = site.throttle.pop(path, None)
                try:
                    if site.latency and path != "/robots.txt":
                        time.sleep(site.latency)
                    status, body, headers = site.render(path, retry_after)
                    send_html(self, status, body, headers)
                finally:
                    with site.lock:
                        site.inflight -= 1
                        site.hits.append(Hit(path, arrived, time.time(), status, handled))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = QuietServer((host, 0), Handler)
        # Accepted connections inherit it: a request sent at once on a new
        # connection may be received before the server accepts it.
        stamp_arrivals(self.server.socket)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def render(self, path: str, retry_after: str | None) -> tuple[int, str, dict[str, str]]:
        if path in self.broken:
            return 503, "broken", {}
        if path in self.redirects:
            return 301, "moved", {"Location": self.redirects[path]}
        if retry_after is not None:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return 429, "slow down", headers
        if path == "/robots.txt":
            return 200, self.robots, {}
        if path.startswith("/page/") and path.endswith(".html"):
            try:
                i = int(path[len("/page/") : -len(".html")])
            except ValueError:
                i = self.pages
            if i < self.pages:
                links = [3 * i + k for k in (1, 2, 3) if 3 * i + k < self.pages]
                body = "".join(f'<a href="/page/{j}.html">p{j}</a>' for j in links)
                if i == 0:
                    body += '<a href="/private/secret.html">secret</a>'
                return 200, f"<html><title>{self.host} {i}</title>{body}</html>", {}
        return 404, "<html><title>not found</title></html>", {}

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def page_hits(self) -> list[Hit]:
        with self.lock:
            return sorted(
                (h for h in self.hits if h.path != "/robots.txt"), key=lambda h: h.arrived
            )

    def all_hits(self) -> list[Hit]:
        with self.lock:
            return sorted(self.hits, key=lambda h: h.arrived)

    def paths(self) -> list[str]:
        with self.lock:
            return [h.path for h in self.hits]

    def min_gap(self) -> float:
        """Smallest time between two requests arriving here (robots.txt included)."""
        times = [h.arrived for h in self.all_hits()]
        return min((b - a for a, b in pairwise(times)), default=float("inf"))

    def closest(self) -> str:
        """The two requests min_gap is between, for a failing test to show."""
        pairs = list(pairwise(self.all_hits()))
        if not pairs:
            return "fewer than two requests"
        a, b = min(pairs, key=lambda p: p[1].arrived - p[0].arrived)
        return (
            f"{a.path} then {b.path}: {b.arrived - a.arrived:.3f}s apart as received, "
            f"{b.handled - a.handled:.3f}s as the server's threads began on them"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def loopback_available(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True
