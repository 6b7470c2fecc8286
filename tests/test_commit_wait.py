"""CRAWLER_COMMIT_WAIT: a node holds what finished pages produced for a
moment and commits them together (crawler.commitwait).

Against real ``scrapy crawl`` nodes and slow sites on their own loopback
addresses: every page is still fetched once and every item exported once,
with several times fewer commits per page; and the rules that decide when a
commit may wait, on their own."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from scrapy.settings import Settings

from crawler.commitwait import CommitWait
from crawler.config import CrawlConfig
from crawler.exceptions import ConfigError
from crawler.frontier import Batch
from crawler.politeness import Policy
from tests.conftest import read_jsonl, run_scrapy, start_node, wait_nodes
from tests.hosts import HostSite, loopback_available

# Gaps between requests as the server saw them: run alone (marker `timing`).
pytestmark = pytest.mark.timing

HOSTS = [f"127.0.0.{n}" for n in range(40, 52)]
PAGES = 60


def _policy(concurrency: int = 8) -> Policy:
    return Policy(delay=0.0, concurrency=concurrency, jitter=0.0)


def test_a_broad_crawl_waits_and_a_domain_at_the_node_s_share_does_not():
    wait = CommitWait(0.5, _policy(8), batch_size=200)
    # A broad crawl: the node holds few leases of each domain.
    slots = {"1": "a", "2": "a", "3": "b", "4": "c", "5": "d"}
    batch = Batch(acks=["1"], items=[(b"i", "{}")])
    assert wait.may_wait(10.0, batch, Batch(), False, slots, live=2)
    # ... until the oldest write is CRAWLER_COMMIT_WAIT old.
    assert wait.may_wait(10.4, batch, Batch(), False, slots, live=2)
    assert wait.remaining(10.4) == pytest.approx(0.1)
    assert not wait.may_wait(10.5, batch, Batch(), False, slots, live=2)
    wait.flushed()
    assert wait.remaining(10.5) is None
    # 8 slots over 2 nodes: a node holding 4 of "a" is at its share, and a
    # held slot would keep a request of "a" waiting (here or elsewhere).
    slots = {"1": "a", "2": "a", "3": "a", "4": "a", "5": "b"}
    assert not wait.may_wait(11.0, batch, Batch(), False, slots, live=2)
    # Shares round up: with 3 nodes a node holds 3 of 8, and 3 x 3 > 8.
    three = {"1": "a", "2": "a", "3": "a", "5": "b"}
    assert not wait.may_wait(11.0, batch, Batch(), False, three, live=3)
    assert wait.may_wait(11.0, batch, Batch(), False, three, live=2)
    # A domain's own concurrency (DOWNLOAD_SLOTS) counts: 1 slot, 2 nodes.
    one = CommitWait(0.5, Policy(0.0, 8, 0.0, overrides={"a": (None, 1, None)}), 200)
    assert not one.may_wait(11.0, batch, Batch(), False, {"1": "a", "5": "b"}, live=2)
    assert one.may_wait(11.0, Batch(acks=["5"]), Batch(), False, {"1": "a", "5": "b"}, live=2)


def test_a_start_report_waits_half_its_domain_s_delay():
    """A report carries when its request started (Redis times the domain's
    next request from then), so it may wait while the delay runs, and must
    be in Redis well before it ends."""
    policy = Policy(
        delay=1.0,
        concurrency=8,
        jitter=0.5,
        overrides={"fast": (0.0, None, None), "slow": (30.0, None, None)},
    )
    wait = CommitWait(0.5, policy, batch_size=200)
    slots = {"1": "a", "2": "b"}
    # Started at 10.0 with a factor of 0.6: its domain's next request may
    # start at 10.6, so the report goes by 10.3.
    batch = Batch(acks=["1"], starts=[("a", 0.6, 10.0, 0)])
    assert wait.may_wait(10.1, batch, Batch(), False, slots, live=2)
    assert wait.remaining(10.1) == pytest.approx(0.2)
    assert not wait.may_wait(10.3, batch, Batch(), False, slots, live=2)
    wait.flushed()
    # The earliest of several reports counts; a long delay waits no longer
    # than CRAWLER_COMMIT_WAIT.
    batch = Batch(starts=[("a", 1.5, 20.0, 0), ("b", 0.8, 20.1, 0)])
    assert wait.may_wait(20.2, batch, Batch(), False, slots, live=2)
    assert wait.remaining(20.2) == pytest.approx(0.3)  # 20.1 + 0.4
    assert not wait.may_wait(20.5, batch, Batch(), False, slots, live=2)
    wait.flushed()
    long = Batch(starts=[("a", 1.5, 30.0, 0)])  # due at 30.75, the wait ends at 30.5
    assert wait.may_wait(30.0, long, Batch(), False, slots, live=2)
    assert wait.remaining(30.0) == pytest.approx(0.5)
    assert not wait.may_wait(30.5, long, Batch(), False, slots, live=2)
    wait.flushed()
    # A long delay: a second at most (a report 5 s late is timed from its
    # arrival, crawler.frontier).
    slow = CommitWait(5.0, policy, batch_size=200)
    assert slow.may_wait(35.0, Batch(starts=[("slow", 1.0, 35.0, 0)]), Batch(), False, slots, 2)
    assert slow.remaining(35.0) == pytest.approx(1.0)
    # A domain without a delay (robots.txt unread, a page budget): at once.
    assert not wait.may_wait(40.0, Batch(starts=[("fast", 1.0, 40.0, 0)]), Batch(), False, slots, 2)
    # A factor of 0 (jitter 1): no delay to wait in.
    assert not wait.may_wait(41.0, Batch(starts=[("a", 0.0, 41.0, 0)]), Batch(), False, slots, 2)


def test_politeness_news_an_idle_node_and_a_full_batch_commit_at_once():
    wait = CommitWait(0.5, _policy(), batch_size=3)
    slots = {"1": "a", "2": "b"}
    acks = Batch(acks=["1"])
    assert wait.may_wait(0.0, acks, Batch(), False, slots, 2)
    assert not wait.may_wait(0.0, acks, Batch(), True, slots, 2)  # urgent
    for news in (
        Batch(acks=["1"], starts=[("a", 1.0, 0.0, 0)]),  # "a" has no delay
        Batch(acks=["1"], unblocks=[("a", 0)]),
        Batch(acks=["1"], backoffs=[("a", -1)]),
        Batch(acks=["1"], deads=[("1", "{}")]),
        Batch(acks=["1"], items=[(b"i", "{}"), (b"j", "{}")]),  # 3 writes: full
    ):
        assert not wait.may_wait(0.0, news, Batch(), False, slots, 2), news
    assert not CommitWait(0.0, _policy(), 200).may_wait(0.0, acks, Batch(), False, slots, 2)
    # Acknowledgements deferred to the next commit (partitions) wait too.
    assert wait.may_wait(0.0, Batch(), Batch(acks=["1"]), False, slots, 2)
    # Nothing to write: nothing waits, and the clock restarts.
    assert not wait.may_wait(5.0, Batch(), Batch(), False, slots, 2)
    assert wait.since is None


def _stat(log: str, name: str, default: int | None = None) -> int:
    found = re.findall(rf"'{re.escape(name)}': (\d+)", log)
    if not found and default is not None:
        return default  # a counter never counted is not in Scrapy's stats
    assert found, f"no {name} in the node's stats"
    return int(found[-1])


def _crawl(
    redis_url: str, tmp_path: Path, run: str, pages: int, latency: float, setting: str
) -> tuple[list[str], float, list[HostSite]]:
    """2 nodes crawl HOSTS' sites of *pages* pages to the end: their logs,
    the seconds it took, the sites."""
    sites = [HostSite(host, pages, latency=latency) for host in HOSTS]
    try:
        seeds = [s.url("/page/0.html") for s in sites]
        assert run_scrapy(["seed", "site", *seeds], redis_url).returncode == 0
        started = time.monotonic()
        logs = [tmp_path / f"{run}-n{i}.log" for i in range(2)]
        nodes = [start_node("site", redis_url, log, setting) for log in logs]
        assert wait_nodes(nodes, 180) == [0, 0]
        took = time.monotonic() - started
    finally:
        for site in sites:
            site.close()
    texts = [log.read_text() for log in logs]
    for text in texts:
        assert "Spider closed (finished)" in text, text[-3000:]
    return texts, took, sites


@pytest.mark.skipif(
    not all(loopback_available(h) for h in HOSTS), reason=f"needs loopback {HOSTS[0]}.."
)
def test_slow_broad_crawl_commits_several_pages_at_once(redis_url, rclient, tmp_path):
    figures = {}
    for wait in ("0", "0.5"):
        rclient.flushall()
        texts, took, sites = _crawl(
            redis_url, tmp_path, wait, PAGES, 0.15, f"CRAWLER_COMMIT_WAIT={wait}"
        )
        commits = sum(_stat(text, "crawler/commits") for text in texts)
        waited = sum(_stat(text, "crawler/commits_waited", 0) for text in texts)
        acked = sum(_stat(text, "crawler/acked") for text in texts)
        pages = [h.path for s in sites for h in s.page_hits()]
        # Every page once (robots.txt forbids /private/), every item once,
        # nothing dead-lettered.
        assert len(pages) == len(HOSTS) * PAGES, len(pages)
        assert len(set((s.host, h.path) for s in sites for h in s.page_hits())) == len(pages)
        out = tmp_path / f"items-{wait}.jsonl"
        assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
        urls = [item["url"] for item in read_jsonl(out)]
        assert len(urls) == len(set(urls)) == len(pages)
        assert rclient.llen("{site}:dead") == 0
        figures[wait] = (acked / commits, took, waited / commits)
    print(f"pages per commit, seconds: without wait {figures['0']}, with 0.5 s {figures['0.5']}")
    # Pages per commit measured 1.4-2.7 without a wait and 2.7-3.7 with
    # one, alone on the machine; beside the suite's other tests (pytest -n
    # 4) 4.2 without and 3.7 with: load moves both (more pages finish per
    # tick on a busy machine, while the start-report window caps a held
    # commit), so comparing them is no test. What the wait does is counted
    # instead: how many commits' writes waited (crawler/commits_waited).
    # Without a wait none may; with one 30-46% did (a page of a site the
    # node holds its share of, the crawl's start and end commit at once),
    # and a commit carried at least 2 pages on average.
    with_wait, without = figures["0.5"], figures["0"]
    assert without[2] == 0, figures
    assert with_wait[2] >= 0.1, figures
    assert with_wait[0] >= 2, figures


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_wait_is_named_with_what_to_do(value):
    with pytest.raises(ConfigError, match=rf"CRAWLER_COMMIT_WAIT='{value}'.*0 or more"):
        CrawlConfig.from_settings(Settings({"CRAWLER_COMMIT_WAIT": value}), "t")
    zero = CrawlConfig.from_settings(Settings({"CRAWLER_COMMIT_WAIT": "0"}), "t")
    assert zero.commit_wait == 0.0


@pytest.mark.skipif(
    not all(loopback_available(h) for h in HOSTS), reason=f"needs loopback {HOSTS[0]}.."
)
def test_polite_broad_crawl_keeps_every_delay_with_few_calls(redis_url, rclient, tmp_path):
    """DOWNLOAD_DELAY on many sites: the sites' delays come due one by one.
    A lease call hands out what comes due within a second, each request
    sent when its domain is ready, and start reports wait in held commits:
    every delay holds, with far fewer Redis calls per page."""
    pages = 15
    texts, _, sites = _crawl(redis_url, tmp_path, "polite", pages, 0.05, "DOWNLOAD_DELAY=0.5")
    hits = [(s.host, h.path) for s in sites for h in s.page_hits()]
    assert len(hits) == len(set(hits)) == len(HOSTS) * pages
    out = tmp_path / "polite.jsonl"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    urls = [item["url"] for item in read_jsonl(out)]
    assert len(urls) == len(set(urls)) == len(hits)
    # Scrapy's jitter draws 0.5x to 1.5x the delay; 0.02 s is the time from
    # a request reaching the downloader to reaching the server.
    gaps = [s.min_gap() for s in sites]
    assert min(gaps) >= 0.25 - 0.02, gaps
    trips = sum(_stat(text, "crawler/redis_roundtrips") for text in texts)
    acked = sum(_stat(text, "crawler/acked") for text in texts)
    print(f"min gap {min(gaps):.3f} s; {trips / acked:.2f} Redis round trips per page")
    # Measured: 2.5 round trips per page (heartbeats, robots.txt and the
    # crawl's start and end included); 6.9 before lease-ahead and the held
    # start reports, when a node asked Redis each time a domain came due.
    assert trips / acked < 3.5, (trips, acked)
