"""Processes that disagree on the seen-set settings refuse to start, with an
error naming both, instead of splitting the seen-set or looping forever."""

from __future__ import annotations

from tests.conftest import run_scrapy


def test_seed_with_other_seen_mode_refuses(make_site, redis_url, rclient):
    site = make_site(3)
    first = run_scrapy(
        ["seed", "site", "-s", "CRAWLER_SEEN_MODE=bloom", site.url("/page/0.html")], redis_url
    )
    assert first.returncode == 0, first.stderr
    # Before: this seed never returned (commit.lua answered -1 forever).
    second = run_scrapy(["seed", "site", site.url("/page/1.html")], redis_url, timeout=60)
    assert second.returncode == 1
    assert "keeps its seen-set with CRAWLER_BLOOM_CAPACITY=10000000" in second.stderr
    assert "CRAWLER_SEEN_MODE='bloom'" in second.stderr
    assert (
        "but this process has CRAWLER_SEEN_MODE='exact', CRAWLER_SEEN_SHARDS=65536" in second.stderr
    )
    assert rclient.llen("{site}:q:0") == 1


def test_crawl_node_with_other_shards_refuses(make_site, redis_url, rclient):
    """exact-then-other-shards used to split the seen-set silently."""
    site = make_site(3)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    node = run_scrapy(["crawl", "site", "-s", "CRAWLER_SEEN_SHARDS=16"], redis_url, timeout=60)
    assert node.returncode == 1
    assert "\nerror: crawl 'site' keeps its seen-set with" in node.stderr
    assert "CRAWLER_SEEN_SHARDS=65536" in node.stderr and "CRAWLER_SEEN_SHARDS=16" in node.stderr
    assert site.page_counts() == {}


def test_old_bloom_crawl_without_record_is_recognised(make_site, redis_url, rclient):
    """A crawl written before the record: its Bloom layers tell."""
    site = make_site(3)
    first = run_scrapy(
        ["seed", "site", "-s", "CRAWLER_SEEN_MODE=bloom", site.url("/page/0.html")], redis_url
    )
    assert first.returncode == 0, first.stderr
    rclient.delete("{site}:config")
    second = run_scrapy(["seed", "site", site.url("/page/1.html")], redis_url, timeout=60)
    assert second.returncode == 1 and "CRAWLER_SEEN_MODE='bloom'" in second.stderr
