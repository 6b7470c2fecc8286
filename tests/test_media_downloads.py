"""Downloads the frontier never sees (``crawler.engine.download()``, as
Scrapy's FilesPipeline and ImagesPipeline make them) keep the spider's
DOWNLOAD_DELAY, as in plain Scrapy. The cluster lifts the downloader's own
delay for the requests it hands out (it paces those itself); it lifted it
for these too, and a polite crawl's files reached the site all at once."""

from __future__ import annotations

import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import read_jsonl, run_scrapy, start_node
from tests.hosts import kernel_arrival, stamp_arrivals

META = Path(__file__).resolve().parent / "metaproj"
PAGES = 3
FILES_PER_PAGE = 3
DELAY = 0.5  # the spider's DOWNLOAD_DELAY

pytestmark = pytest.mark.timing  # gaps between requests as the server saw them


class FileSite:
    """Pages /page/N.html and files /file/N-K.bin; records when each request
    reached the machine (time.time()'s clock, as the kernel stamped it:
    tests/hosts.py's kernel_arrival). *paused*: a path answered 429 with a
    long Retry-After; *robots_moved*: /robots.txt redirects to
    /robots-real.txt; *busy_once*: a path answered 429 with Retry-After 2
    the first time.

    Timed when the server's thread got to run do_GET, a request that had
    reached the site 0.595 s after the one before it (tcpdump on the
    loopback) was recorded 0.434 s late, 0.161 s after it: the pytest
    process, which runs this server, waited for a core on a loaded
    machine."""

    def __init__(self, paused: str = "", robots_moved: bool = False, busy_once: str = "") -> None:
        self.file_times: list[float] = []
        self.times: list[float] = []  # every request's
        self.paths: list[tuple[float, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            received: float | None = None

            def log_message(self, *args: object) -> None:
                pass

            def handle_one_request(self) -> None:
                # One request per connection (HTTP/1.0): nothing of it is
                # read yet.
                self.received = kernel_arrival(self.connection)
                super().handle_one_request()

            def do_GET(self) -> None:
                handled = time.time()
                arrived = min(self.received or handled, handled)
                outer.times.append(arrived)
                outer.paths.append((arrived, self.path))
                if self.path == busy_once and [p for _, p in outer.paths].count(busy_once) == 1:
                    self.send_response(429)
                    self.send_header("Retry-After", "2")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == paused or (robots_moved and self.path == "/robots.txt"):
                    self.send_response(429 if self.path == paused else 301)
                    self.send_header("Retry-After", "200")
                    self.send_header("Location", "/robots-real.txt")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/file/"):
                    outer.file_times.append(arrived)
                    body, kind = self.path.encode() * 20, "application/octet-stream"
                else:
                    body, kind = b"<html><title>page</title></html>", "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        stamp_arrivals(self.server.socket)  # accepted connections inherit it
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_files_a_pipeline_downloads_keep_the_download_delay(redis_url, tmp_path):
    site = FileSite()
    try:
        seeds = [f"{site.base}/page/{n}.html" for n in range(PAGES)]
        seeded = run_scrapy(["seed", "media", *seeds], redis_url, cwd=META)
        assert seeded.returncode == 0, seeded.stderr
        log = tmp_path / "node.log"
        node = start_node("media", redis_url, log, f"FILES_STORE={tmp_path / 'files'}", cwd=META)
        assert node.wait(timeout=120) == 0, log.read_text()[-3000:]
        times = sorted(site.file_times)
    finally:
        site.close()

    assert len(times) == PAGES * FILES_PER_PAGE
    gaps = [round(b - a, 3) for a, b in pairwise(times)]
    # Plain Scrapy: every gap about DELAY. Before: 0.000-0.01 s within a page's files.
    # (0.7: a busy machine delays one request on its way more than the next.)
    assert min(gaps) >= DELAY * 0.7, gaps

    out = tmp_path / "items.jsonl"
    exported = run_scrapy(["export", "media", "-o", str(out)], redis_url, cwd=META)
    assert exported.returncode == 0, exported.stderr
    items = read_jsonl(out)
    assert len(items) == PAGES
    assert all(f["status"] == "downloaded" for item in items for f in item["files"]), items


@pytest.mark.parametrize("partitions", [1, 3])
def test_two_nodes_keep_the_delay_between_them_for_files_too(redis_url, tmp_path, partitions):
    """The delay is the domain's, for the whole cluster: each node's own
    slot kept it between its own files only, so two nodes sent theirs to
    the site side by side (gaps of 0.000-0.01 s)."""
    pages = 6
    site = FileSite()
    try:
        seeds = [f"{site.base}/page/{n}.html" for n in range(pages)]
        split = f"CRAWLER_PARTITIONS={partitions}"
        seeded = run_scrapy(["seed", "media", "-s", split, *seeds], redis_url, cwd=META)
        assert seeded.returncode == 0, seeded.stderr
        logs = [tmp_path / f"node{i}.log" for i in range(2)]
        store = f"FILES_STORE={tmp_path / 'files'}"
        nodes = [start_node("media", redis_url, log, store, split, cwd=META) for log in logs]
        for node, log in zip(nodes, logs, strict=True):
            assert node.wait(timeout=120) == 0, log.read_text()[-3000:]
        times = sorted(site.times)
        files = len(site.file_times)
    finally:
        site.close()

    assert files == pages * FILES_PER_PAGE
    assert len(times) == pages + files + 1  # robots.txt, fetched once by the cluster
    gaps = [round(b - a, 3) for a, b in pairwise(times[1:])]
    assert min(gaps) >= DELAY * 0.7, gaps
    for log in logs:  # both nodes downloaded files
        assert "'file_status_count/downloaded'" in log.read_text(), log.read_text()[-3000:]


def _crawl_files(redis_url: str, tmp_path: Path, site: FileSite, pages: int, *settings: str) -> str:
    """Seed *pages* pages of *site*, crawl them with one node; its log."""
    seeds = [f"{site.base}/page/{n}.html" for n in range(pages)]
    seeded = run_scrapy(["seed", "media", *seeds], redis_url, cwd=META)
    assert seeded.returncode == 0, seeded.stderr
    log = tmp_path / "node.log"
    store = f"FILES_STORE={tmp_path / 'files'}"
    node = start_node("media", redis_url, log, store, *settings, cwd=META)
    assert node.wait(timeout=120) == 0, log.read_text()[-3000:]
    return log.read_text()


def _close_pairs(site: FileSite) -> list[tuple[float, str, str]]:
    """Requests that reached the site less than 0.7 of the delay apart."""
    times = sorted(site.paths)
    return [(round(b - a, 3), p, q) for (a, p), (b, q) in pairwise(times) if b - a < DELAY * 0.7]


@pytest.mark.parametrize("settings", [(), ("CONCURRENT_REQUESTS=2",)])
def test_a_file_sent_late_after_its_turn_times_the_next_request(redis_url, tmp_path, settings):
    """A file's turn timed the domain's next request from when Redis granted
    it, not from when the file went out: its node, its event loop busy
    between the two (tests/slow_turn.py stalls it 0.3 s), sent it late, and
    the next request went 0.24-0.28 s after it. The turn now holds the
    domain until the file's start is reported, as a leased page's lease
    does. With CONCURRENT_REQUESTS=2 a file goes before its node's own
    leased page, which the node held back one delay from Redis's answer,
    not from when the file went: 0.155-0.212 s between them."""
    site = FileSite()
    try:
        slow = 'EXTENSIONS={"tests.slow_turn.SlowTurns": 0}'
        text = _crawl_files(redis_url, tmp_path, site, 3, slow, *settings)
    finally:
        site.close()
    assert len(site.file_times) == 3 * FILES_PER_PAGE
    assert text.count("Stalling the event loop after the turn of") >= 4, text[-3000:]
    assert not _close_pairs(site), _close_pairs(site)


def test_files_do_not_wait_on_the_nodes_own_leased_page(redis_url, tmp_path):
    """A file waiting for its domain's turn waited on the hold of the next
    page this node had leased, which could not go out because the waiting
    files filled the downloader (CONCURRENT_REQUESTS=2): nothing moved until
    the page was handed back unsent, 22.5 s later, and again for the next
    (6 pages took 127 s, helper 56). The file now goes first, the page a
    delay after it."""
    site = FileSite()
    try:
        started = time.monotonic()
        text = _crawl_files(redis_url, tmp_path, site, 6, "CONCURRENT_REQUESTS=2")
        took = time.monotonic() - started
    finally:
        site.close()
    assert len(site.file_times) == 6 * FILES_PER_PAGE
    assert "released_unsent" not in text, text[-3000:]
    assert not _close_pairs(site), _close_pairs(site)
    # 25 requests (robots.txt too) one delay (0.5-0.55 s) apart, and the start.
    assert took < 40, took


def test_robots_txt_redirected_goes_first(redis_url, tmp_path):
    """robots.txt answered with a redirect: the redirected fetch waited on
    the hold of the page waiting for it until the hold ran out (30 s), then
    two pages went out 10 ms apart (helper 56)."""
    site = FileSite(robots_moved=True)
    try:
        origin = time.time()  # the site's clock
        _crawl_files(redis_url, tmp_path, site, 2)
    finally:
        site.close()
    paths = [p for _, p in sorted(site.paths)]
    assert paths[:3] == ["/robots.txt", "/robots-real.txt", "/page/0.html"], paths
    first_page = dict((p, t) for t, p in site.paths)["/page/0.html"] - origin
    assert first_page < 15, first_page  # the node's start, then two delays
    assert not _close_pairs(site), _close_pairs(site)


def test_a_stop_does_not_wait_out_a_pause_for_files(redis_url, tmp_path):
    """A file of a domain paused by a 429 (Retry-After 200) waited out the
    pause, and with it the node's graceful stop: still running 150 s after
    SIGTERM with CRAWLER_STOP_TIMEOUT=5 (helper 56). It now gives up when
    the node hands its requests back, and is not sent meanwhile."""
    site = FileSite(paused="/page/1.html")
    try:
        seeds = [f"{site.base}/page/{n}.html" for n in range(2)]
        seeded = run_scrapy(["seed", "media", *seeds], redis_url, cwd=META)
        assert seeded.returncode == 0, seeded.stderr
        log = tmp_path / "node.log"
        store = f"FILES_STORE={tmp_path / 'files'}"
        node = start_node("media", redis_url, log, store, "CRAWLER_STOP_TIMEOUT=5", cwd=META)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "pausing it for the whole cluster" not in (
            log.read_text() if log.exists() else ""
        ):
            time.sleep(0.2)
        time.sleep(2)  # page 0's files now wait for the pause
        files_before = len(site.file_times)
        stopped = time.monotonic()
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        finally:
            if node.poll() is None:
                node.kill()
        took = time.monotonic() - stopped
        files_after = len(site.file_times)
    finally:
        site.close()
    text = log.read_text()
    assert "pausing it for the whole cluster" in text, text[-3000:]
    assert took < 30, (took, text[-3000:])
    assert "Spider closed (shutdown)" in text, text[-3000:]
    assert files_after == files_before, "a file went to the paused domain"
    # What the node held went back: page 0 (its files unfetched) is done by no one yet.
    status = run_scrapy(["status", "media", "--json"], redis_url, cwd=META)
    assert status.returncode == 0, status.stderr


def test_a_429_on_a_file_pauses_its_domain_for_the_cluster(redis_url, tmp_path):
    """A file answered 429 with Retry-After: Scrapy's RetryMiddleware retried
    it at once and gave up, and the site's pages kept coming (helper 56). It
    now pauses the domain for the whole cluster, as a page's 429 does, and
    the file is downloaded again after the pause."""
    busy = "/file/0-1.bin"
    site = FileSite(busy_once=busy)
    try:
        text = _crawl_files(redis_url, tmp_path, site, 3)
    finally:
        site.close()
    assert "pausing it for the whole cluster (Retry-After 2s) and downloading it again" in text
    times = sorted(site.paths)
    refused = next(t for t, p in times if p == busy)
    after = [(round(t - refused, 3), p) for t, p in times if t > refused]
    assert after and after[0][0] >= 1.9, after[:3]  # the pause held, for pages too
    assert [p for _, p in times].count(busy) == 2, times
    items = {item["url"].rsplit("/", 1)[1]: item for item in _items(redis_url, tmp_path)}
    assert all(f["status"] == "downloaded" for f in items["0.html"]["files"]), items
    assert len(items["0.html"]["files"]) == FILES_PER_PAGE, items


def _items(redis_url: str, tmp_path: Path) -> list[dict]:
    out = tmp_path / "items.jsonl"
    exported = run_scrapy(["export", "media", "-o", str(out)], redis_url, cwd=META)
    assert exported.returncode == 0, exported.stderr
    return read_jsonl(out)
