"""HTTP servers on their own loopback addresses (127.0.0.2, 127.0.0.3, ...),
each a separate domain to Scrapy, that record when every request arrived and
how many were in progress at once."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from itertools import pairwise

from crawler.demosite import QuietServer


@dataclass
class Hit:
    path: str
    arrived: float
    finished: float
    status: int


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
    ) -> None:
        self.host = host
        self.pages = pages
        self.latency = latency
        self.robots = robots
        # path -> Retry-After value ("" for none): answered 429 the first time.
        self.throttle = dict(throttle or {})
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                arrived = time.time()
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
                        site.hits.append(Hit(path, arrived, time.time(), status))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = QuietServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def render(self, path: str, retry_after: str | None) -> tuple[int, str, dict[str, str]]:
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
