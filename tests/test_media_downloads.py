"""Downloads the frontier never sees (``crawler.engine.download()``, as
Scrapy's FilesPipeline and ImagesPipeline make them) keep the spider's
DOWNLOAD_DELAY, as in plain Scrapy. The cluster lifts the downloader's own
delay for the requests it hands out (it paces those itself); it lifted it
for these too, and a polite crawl's files reached the site all at once."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import read_jsonl, run_scrapy, start_node

META = Path(__file__).resolve().parent / "metaproj"
PAGES = 3
FILES_PER_PAGE = 3
DELAY = 0.5  # the spider's DOWNLOAD_DELAY

pytestmark = pytest.mark.timing  # gaps between requests as the server saw them


class FileSite:
    """Pages /page/N.html and files /file/N-K.bin; records when each file was asked for."""

    def __init__(self) -> None:
        self.file_times: list[float] = []
        self.times: list[float] = []  # every request's
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.times.append(time.monotonic())
                if self.path.startswith("/file/"):
                    outer.file_times.append(time.monotonic())
                    body, kind = self.path.encode() * 20, "application/octet-stream"
                else:
                    body, kind = b"<html><title>page</title></html>", "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
