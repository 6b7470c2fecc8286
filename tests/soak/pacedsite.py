"""The soak's site: the demo site (tree-shaped) recording every page arrival,
paced so that the crawl lasts the soak."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from pathlib import Path

from crawler.demosite import QuietServer, Site, make_handler

# Never slower than the base pace; only the catch-up after a fault is faster.
MAX_WAIT = 5.0


class PacedSite:
    """``crawler.demosite``'s site with ``tree=True`` on a free loopback port.

    Every ``/page/`` request is recorded (arrival time, path, the node's name
    from its User-Agent ``soak-<name>``) before it is
    served; then it waits for its turn so that pages go out no faster than
    ``pages / (finish_by - now)`` a second: the crawl ends near ``finish_by``
    (time.time()) whatever the machine's speed, and catches up after faults.
    """

    def __init__(self, pages: int, finish_by: float) -> None:
        self.pages = pages
        self.finish_by = finish_by
        self.arrivals: list[tuple[float, str, str]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._base_spacing = max(0.0, finish_by - time.time()) / pages
        handler = make_handler(Site(pages, tree=True))
        outer = self

        class Paced(handler):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path.startswith("/page/"):
                    outer._arrive(path, self.headers.get("User-Agent", ""))
                super().do_GET()

        self.server = QuietServer(("127.0.0.1", 0), Paced)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _arrive(self, path: str, agent: str) -> None:
        now = time.time()
        with self._lock:
            self.arrivals.append((now, path, agent.removeprefix("soak-")))
            self._seen.add(path)
            remaining = max(1, self.pages - len(self._seen))
            spacing = min(self._base_spacing, max(0.0, self.finish_by - now) / remaining)
            slot = max(now, self._next_slot + spacing)
            self._next_slot = slot
        time.sleep(min(MAX_WAIT, max(0.0, slot - now)))

    def fetched(self) -> int:
        """Distinct pages fetched so far."""
        with self._lock:
            return len(self._seen)

    def last_arrival(self) -> float:
        with self._lock:
            return self.arrivals[-1][0] if self.arrivals else 0.0

    def page_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(path for _, path, _ in self.arrivals)

    def save(self, path: Path) -> None:
        """Every page fetch as a line: seconds since the epoch, path, node."""
        with self._lock:
            lines = [f"{at:.3f}\t{page}\t{node}\n" for at, page, node in self.arrivals]
        path.write_text("".join(lines))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure_capacity(pages: int, requests: int = 3000, connections: int = 6) -> float:
    """Pages/s the unpaced demo site serves over keep-alive connections (a
    throwaway server of the same size, so the soak's counts stay clean)."""
    server = QuietServer(("127.0.0.1", 0), make_handler(Site(pages, tree=True)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def client(first: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(first, requests, connections):
            conn.request("GET", f"/page/{(i * 7919) % pages}.html")
            conn.getresponse().read()
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    server.shutdown()
    server.server_close()
    return requests / elapsed
