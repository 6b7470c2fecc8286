"""Real multi-node crawls: 3 ``scrapy crawl`` processes share one frontier."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import REDIS_CLI, read_jsonl, run_scrapy, start_node

PAGES = 2000


def crawl_with_nodes(
    n: int, redis_url: str, tmp_path: Path, *settings: str, spider: str = "site"
) -> tuple[list[int], list[str], float]:
    started = time.monotonic()
    logs = [tmp_path / f"node{i}.log" for i in range(n)]
    nodes = [start_node(spider, redis_url, log, *settings) for log in logs]
    codes = []
    for node in nodes:
        try:
            codes.append(node.wait(timeout=300))
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise AssertionError("a node did not finish within 300s") from None
    return codes, [log.read_text() for log in logs], time.monotonic() - started


def assert_complete(site, redis_url: str, tmp_path: Path, codes, logs) -> dict[str, int]:
    counts = site.page_counts()
    expected = {f"/page/{i}.html" for i in range(PAGES)}
    assert set(counts) == expected, f"missing {sorted(expected - set(counts))[:10]}"
    dups = {p: n for p, n in counts.items() if n != 1}
    assert not dups, f"fetched more than once: {list(dups.items())[:10]}"
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, log[-3000:]
        assert "Spider closed (finished)" in log
    out = tmp_path / "items.jsonl"
    result = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert result.returncode == 0, result.stderr
    items = read_jsonl(out)
    urls = [item["url"] for item in items]
    assert len(urls) == PAGES == len(set(urls))
    assert {u.split("127.0.0.1:", 1)[1].split("/", 1)[1] for u in urls} == {
        p.lstrip("/") for p in expected
    }
    return counts


def test_three_nodes_seeded_with_scrapy_seed(make_site, redis_url, tmp_path):
    site = make_site(PAGES)
    seeded = run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url)
    assert seeded.returncode == 0, seeded.stderr
    assert "1 queued, 0 already seen, 0 rejected" in seeded.stdout
    codes, logs, wall = crawl_with_nodes(3, redis_url, tmp_path)
    counts = assert_complete(site, redis_url, tmp_path, codes, logs)
    # Work was shared: with one site and Scrapy's default of 8 requests per
    # domain for the whole cluster, fair shares (3 slots each) leave every
    # node a good part of the pages.
    for log in logs:
        acked = re.search(r"'crawler/acked': (\d+)", log)
        assert acked and int(acked.group(1)) >= PAGES // 10, acked
    print(
        f"3 nodes: {sum(counts.values())} pages fetched, "
        f"{sum(counts.values()) - len(counts)} duplicates, wall {wall:.1f}s"
    )


def test_three_nodes_seeded_with_redis_cli_lpush(make_site, redis_url, rclient, tmp_path):
    site = make_site(PAGES)
    port = rclient.connection_pool.connection_kwargs["port"]
    pushed = subprocess.run(
        [REDIS_CLI, "-p", str(port), "lpush", "site:start_urls", site.url("/page/0.html")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == "1"
    codes, logs, _ = crawl_with_nodes(3, redis_url, tmp_path)
    assert_complete(site, redis_url, tmp_path, codes, logs)
    assert rclient.llen("site:start_urls") == 0


def test_start_urls_of_a_plain_spider_are_fetched_once(make_site, redis_url, tmp_path):
    """No seeding: each node's own start request goes through the shared
    seen-set, so 3 nodes fetch it once; a later link to it is fetched again,
    as plain Scrapy does with its dont_filter start requests."""
    site = make_site(40)
    start = f"start_url={site.url('/page/0.html')}"
    procs = [
        start_node("site", redis_url, tmp_path / f"n{i}.log", spider_args=[start]) for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    counts = site.page_counts()
    assert len(counts) == 40
    assert counts.pop("/page/0.html") == 2  # the start request, then a link to it
    assert set(counts.values()) == {1}


def test_idle_node_waits_for_a_busy_one(make_site, redis_url, tmp_path):
    """Node B has nothing to do while A fetches a slow page; B must not exit
    before that page's children exist, and then helps crawl them."""
    site = make_site(40, delays={"/page/0.html": 4.0})
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    a = start_node("site", redis_url, tmp_path / "a.log", "CRAWLER_PREFETCH=1")
    time.sleep(1.5)
    b = start_node("site", redis_url, tmp_path / "b.log", "CRAWLER_PREFETCH=1")
    assert a.wait(timeout=120) == 0
    assert b.wait(timeout=120) == 0
    b_exit = time.time()
    assert b_exit > site.served_at["/page/0.html"]
    assert "Spider closed (finished)" in (tmp_path / "b.log").read_text()
    assert len(site.page_counts()) == 40
    assert set(site.page_counts().values()) == {1}


def test_keep_alive_waits_for_new_seeds(make_site, redis_url, tmp_path):
    site = make_site(20)
    node = start_node("site", redis_url, tmp_path / "k.log", "CRAWLER_KEEP_ALIVE=True")
    try:
        time.sleep(4)
        assert node.poll() is None, "a keep-alive node exited on an empty crawl"
        assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
        deadline = time.monotonic() + 60
        while len(site.page_counts()) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(site.page_counts()) == 20
        assert node.poll() is None
    finally:
        node.terminate()
        node.wait(timeout=60)
    client = redis.Redis.from_url(redis_url)
    assert int(client.hget("{site}:stats", "items")) == 20
