"""A real site: Debian's Python 3.11 documentation (package python3.11-doc,
about 530 HTML pages), served on loopback, crawled by a CrawlSpider written
as Scrapy's docs show it (tests/zoo/zoo/spiders/pydocs.py).

The oracle is plain Scrapy: the same spider in one process without the
add-on. Two cluster nodes must fetch exactly the pages it fetched, each once,
store the same items, and exit 0 with ``finished``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from crawler.demosite import QuietServer
from tests.conftest import read_jsonl, run_scrapy, start_node
from tests.test_zoo import ZOO, problems

DOCS = Path("/usr/share/doc/python3.11/html")

pytestmark = pytest.mark.skipif(
    not (DOCS / "index.html").is_file(),
    reason=f"Debian's Python docs are not installed ({DOCS}): "
    "apt-get install python3.11-doc (.ci/run does it)",
)


class DocServer:
    """The doc tree over HTTP/1.1 on 127.0.0.1, counting requests per path."""

    def __init__(self, root: Path) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with outer.lock:
                    outer.counts[self.path] += 1
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take_counts(self) -> Counter[str]:
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def docs() -> Iterator[DocServer]:
    server = DocServer(DOCS)
    yield server
    server.close()


def test_python_docs_two_nodes_fetch_what_plain_scrapy_fetches(
    docs, redis_url, tmp_path, monkeypatch
):
    site = {"ZOO_SITE": docs.base}
    monkeypatch.setenv("ZOO_SITE", docs.base)
    plain_out = tmp_path / "plain.jsonl"
    started = time.monotonic()
    plain = run_scrapy(
        ["crawl", "pydocs", "-s", "ADDONS={}", "-s", "LOG_LEVEL=INFO", "-o", str(plain_out)],
        redis_url,
        cwd=ZOO,
        timeout=300,
        **site,
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "'scheduler/enqueued/memory'" in plain.stderr  # Scrapy's own scheduler ran
    plain_counts = docs.take_counts()
    plain_wall = time.monotonic() - started
    plain_items = read_jsonl(plain_out)
    pages = [p for p in plain_counts if p.endswith(".html")]
    on_disk = len(list(DOCS.rglob("*.html")))
    assert len(pages) > on_disk * 0.9, (len(pages), on_disk)

    started = time.monotonic()
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [start_node("pydocs", redis_url, log, cwd=ZOO) for log in logs]
    codes = []
    for node in nodes:
        try:
            codes.append(node.wait(timeout=300))
        except subprocess.TimeoutExpired:
            node.kill()
            codes.append(None)
    texts = [log.read_text() if log.exists() else "" for log in logs]
    assert codes == [0, 0], problems(texts)
    for text in texts:
        assert "Spider closed (finished)" in text, problems(texts)
    counts = docs.take_counts()
    cluster_wall = time.monotonic() - started
    print(f"plain Scrapy {plain_wall:.1f}s, 2 nodes {cluster_wall:.1f}s")
    missing = sorted(set(plain_counts) - set(counts))
    extra = sorted(set(counts) - set(plain_counts))
    assert not missing and not extra, (
        f"the cluster fetched {len(counts)} paths, plain Scrapy {len(plain_counts)}; "
        f"missing {missing[:10]}, extra {extra[:10]}\n{problems(texts)}"
    )
    # Plain Scrapy fetches the start URL twice: as a start request
    # (dont_filter, so not added to the seen-set) and again when a page links
    # back to it, which sends it to the rule's callback. Every other path it
    # fetches once. The cluster must fetch exactly the same.
    assert plain_counts["/index.html"] == 2
    differ = {p: (n, plain_counts[p]) for p, n in counts.items() if n != plain_counts[p]}
    assert not differ, f"(cluster, plain Scrapy) fetches differ: {list(differ.items())[:10]}"

    out = tmp_path / "cluster.jsonl"
    exported = run_scrapy(["export", "pydocs", "-o", str(out)], redis_url, cwd=ZOO, **site)
    assert exported.returncode == 0, exported.stderr[-3000:]
    items = read_jsonl(out)
    # The same items as plain Scrapy, the start page's included: there it is
    # fetched a second time as a linked page and goes to parse_page.
    cluster_pages = {item["url"]: item["title"] for item in items}
    plain_pages = {item["url"]: item["title"] for item in plain_items}
    assert len(cluster_pages) == len(items), "an item was stored twice"
    assert cluster_pages == plain_pages, (
        f"{len(cluster_pages)} items, plain Scrapy {len(plain_pages)}; only plain Scrapy: "
        f"{sorted(set(plain_pages) - set(cluster_pages))[:10]}, only the cluster: "
        f"{sorted(set(cluster_pages) - set(plain_pages))[:10]}"
    )
    print(f"python3.11-doc: {len(pages)} pages of {on_disk} .html files; {len(items)} items")
