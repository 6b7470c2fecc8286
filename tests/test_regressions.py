"""Defects found in review, each pinned by a test against real processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crawler.connection import redact
from crawler.redact import redact_text
from tests.conftest import (
    ANY_TELNET_PORT,
    ROOT,
    SCRAPY,
    assert_any_telnet_port,
    read_jsonl,
    run_scrapy,
    scrapy_env,
    start_node,
    wait_nodes,
)
from tests.test_faults import wait_for

FAST_LEASES = ("CRAWLER_LEASE_TIME=3", "CRAWLER_LEASE_RENEW_INTERVAL=1")


def test_undecodable_entries_never_leave_leases_stuck(make_site, redis_url, rclient, tmp_path):
    """Entries whose decoding raises something other than a clean rejection
    (bad base64, a non-string class, a NaN in a seed) are dead-lettered, and
    the crawl still finishes with nothing left held."""
    site = make_site(10)
    rclient.rpush(
        "{site}:q:0",
        b'0|{"url": "http://a.test/", "body_b64": "QQ"}',
        b'0|{"url": "http://a.test/", "_class": []}',
        b'0|{"url": "http://a.test/", "body_b64": 5}',
    )
    rclient.zadd("{site}:prios", {"0": 0})
    rclient.hset("{site}:stats", "queued", 3)
    rclient.lpush(
        "site:start_urls",
        '{"url": "http://a.test/", "meta": {"download_timeout": NaN}}',
        site.url("/page/0.html"),
    )
    # Finished holding dead letters: CRAWLER_DEAD_LETTER_EXIT_CODE.
    assert start_node("site", redis_url, tmp_path / "n.log").wait(timeout=120) == 3
    assert len(site.page_counts()) == 10
    letters = [json.loads(x) for x in rclient.lrange("{site}:dead", 0, -1)]
    assert len(letters) == 4, [letter["reason"] for letter in letters]
    assert int(rclient.hget("{site}:stats", "leased")) == 0
    assert [k for k in rclient.scan_iter("{site}:held:*")] == []


def test_a_lease_whose_reply_was_lost_is_handed_back(make_site, redis_url, rclient, tmp_path):
    """An entry in a node's held hash that the node never received (the lease
    script ran, its reply was lost) is handed back at the next heartbeat."""
    site = make_site(1)
    node = start_node(
        "site", redis_url, tmp_path / "n.log", "CRAWLER_KEEP_ALIVE=True", *FAST_LEASES
    )
    try:
        wait_for(lambda: rclient.zcard("{site}:nodes") == 1, 30, "the node to join")
        (node_id,) = [n.decode() for n in rclient.zrange("{site}:nodes", 0, -1)]
        entry = json.dumps({"url": site.url("/page/0.html")})
        rclient.hset(f"{{site}}:held:{node_id}", "999999", f"0|0|127.0.0.1|{entry}")
        rclient.hincrby("{site}:stats", "leased", 1)
        wait_for(lambda: site.page_counts().get("/page/0.html") == 1, 20, "the orphan's fetch")
        assert "Handing back 1 leases this node never received" in (tmp_path / "n.log").read_text()
    finally:
        node.terminate()
        assert node.wait(timeout=60) == 0
    assert int(rclient.hget("{site}:stats", "leased")) == 0


def slow_close_node(
    redis_url: str, marker: Path, feed: Path, log: Path, pipeline: str, stop_timeout: float
) -> subprocess.Popen[bytes]:
    """A node whose item pipeline (tests/slow_close_pipeline.py) closes slowly."""
    settings = [
        f"LOG_FILE={log}",
        "CRAWLER_FINISH_GRACE=1",
        f"CRAWLER_STOP_TIMEOUT={stop_timeout}",
        f'ITEM_PIPELINES={{"tests.slow_close_pipeline.{pipeline}": 100}}',
    ]
    return subprocess.Popen(
        [SCRAPY, "crawl", "site", "-o", str(feed), *ANY_TELNET_PORT]
        + [a for s in settings for a in ("-s", s)],
        cwd=ROOT,
        env={**scrapy_env(redis_url), "SLOW_CLOSE_MARKER": str(marker)},
    )


def test_stop_timeout_does_not_cut_a_normal_close_short(make_site, redis_url, tmp_path):
    """A pipeline whose close_spider takes longer than CRAWLER_STOP_TIMEOUT
    still closes, and the node's feed is written."""
    site = make_site(5)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    marker, feed, log = tmp_path / "closed", tmp_path / "feed.jsonl", tmp_path / "n.log"
    proc = slow_close_node(redis_url, marker, feed, log, "SlowClosePipeline", 1)
    assert proc.wait(timeout=120) == 0
    assert marker.read_text() == "closed"
    assert len(feed.read_text().splitlines()) == 5
    assert "Spider closed (finished)" in log.read_text()


def test_a_graceful_stop_times_requests_not_scrapys_close(make_site, redis_url, tmp_path):
    """SIGTERM while slow pages are in flight: they finish, then Scrapy
    closes, and its pipelines' close_spider may take longer than
    CRAWLER_STOP_TIMEOUT. Before, requests Scrapy had finished stayed
    counted as in progress (they were only acknowledged when the engine
    asked for the next request, which a closing engine never does), so the
    stop timeout cut the pipeline's close short: no marker, "Still
    processing 0 requests ... stopping now"."""
    delays = {f"/page/{i}.html": 1.5 for i in range(1, 30)}
    site = make_site(30, delays)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    marker, feed, log = tmp_path / "closed", tmp_path / "feed.jsonl", tmp_path / "n.log"
    proc = slow_close_node(redis_url, marker, feed, log, "AsyncSlowClosePipeline", 2.5)
    wait_for(lambda: "/page/0.html" in site.served_at, 60, "page 0")
    time.sleep(0.7)  # its links are in flight (1.5 s each)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    text = log.read_text()
    assert "Still processing" not in text, text[-3000:]
    assert marker.read_text() == "closed", text[-3000:]
    fetched = sum(n for p, n in site.page_counts().items())
    assert 1 < fetched < 30
    assert len(feed.read_text().splitlines()) == fetched


def test_requeued_bad_seeds_go_through_the_seed_checks_again(
    make_site, redis_url, rclient, tmp_path
):
    site = make_site(1)
    rclient.lpush(
        "site:start_urls",
        json.dumps({"url": site.url("/page/0.html"), "meta": {"proxy": "http://attacker.test"}}),
    )
    # Finished holding dead letters: CRAWLER_DEAD_LETTER_EXIT_CODE.
    assert start_node("site", redis_url, tmp_path / "n.log").wait(timeout=120) == 3
    assert site.page_counts() == {}
    result = run_scrapy(["requeue", "site"], redis_url)
    assert "requeued 0 dead letters" in result.stdout
    assert "1 left in place" in result.stdout
    assert "meta key 'proxy' is not allowed for seeds" in result.stdout
    assert rclient.llen("{site}:dead") == 1 and rclient.llen("{site}:q:0") == 0


def test_bloom_seeding_with_batches_larger_than_capacity_finishes(redis_url, rclient, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"http://bloom.test/{i}\n" for i in range(3000)))
    started = time.monotonic()
    result = run_scrapy(
        [
            "seed",
            "site",
            "-i",
            str(seeds),
            "-s",
            "CRAWLER_SEEN_MODE=bloom",
            "-s",
            "CRAWLER_BLOOM_CAPACITY=200",
            "-s",
            "CRAWLER_BLOOM_ERROR_RATE=1e-9",
        ],
        redis_url,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3000 queued, 0 already seen" in result.stdout
    assert int(rclient.hget("{site}:bloom", "layers")) >= 4
    assert time.monotonic() - started < 60


def test_passwords_are_redacted_wherever_they_sit():
    assert redact("redis://u:p@ss@h:1/0") == "redis://u:***@h:1/0"
    assert redact("redis://h/0?password=s3cret&db=1") == "redis://h/0?password=***&db=1"
    line = "{'REDIS_URL': \"redis://u:it's@h/0\", 'MAIL': 'me@x.org'}"
    assert "it's" not in redact_text(line) and "me@x.org" in redact_text(line)
    assert redact_text("http://example.com:80/a@b") == "http://example.com:80/a@b"


def test_failed_robots_txt_is_not_a_dead_letter(make_site, redis_url, rclient, tmp_path):
    """A robots.txt that answers 500 was dead-lettered (with an empty entry,
    nothing to requeue) and inflated `dead`; it is not a frontier request."""
    site = make_site(20)
    base = site.server.RequestHandlerClass

    class BrokenRobots(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/robots.txt":
                self.send_error(500)
                return
            super().do_GET()

    site.server.RequestHandlerClass = BrokenRobots
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    settings = ("ROBOTSTXT_OBEY=True", "RETRY_TIMES=1")
    node = start_node("site", redis_url, tmp_path / "n.log", *settings)
    assert node.wait(timeout=120) == 0
    assert rclient.llen("{site}:dead") == 0
    assert int(rclient.hget("{site}:stats", "dead") or 0) == 0
    assert len(site.page_counts()) == 20 and set(site.page_counts().values()) == {1}


def test_a_crawl_that_cannot_even_dead_letter_does_not_end_as_a_success(
    make_site, redis_url, rclient, tmp_path
):
    """The dead-letter list overwritten with a string: every dead letter is
    refused. Before, the node logged and exited 0 with `finished`."""
    site = make_site(5)
    seeds = [site.url("/page/0.html"), site.url("/fail/0.html")]
    assert run_scrapy(["seed", "site", *seeds], redis_url).returncode == 0
    rclient.set("{site}:dead", "not a list")
    node = start_node("site", redis_url, tmp_path / "n.log", "RETRY_TIMES=0")
    assert node.wait(timeout=120) == 3
    log = (tmp_path / "n.log").read_text()
    assert "Spider closed (finished)" in log
    assert "the dead-letter list cannot be read" in log
    assert "This node dropped 1 writes Redis refused" in log


def test_a_project_scheduler_is_replaced_or_refused(make_site, redis_url, tmp_path):
    """A project's SCHEDULER outranks the add-on. Before, the node ran
    with it, crawled nothing (AttributeError tracebacks, close reason
    start_error) and exited 0. Scrapy's own scheduler named there is
    replaced, as its default is; another one is refused by name."""
    site = make_site(3)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    other = "scrapy.core.scheduler.BaseScheduler"
    refused = run_scrapy(["crawl", "site", "-s", f"SCHEDULER={other}"], redis_url)
    assert refused.returncode == 1
    assert f"SCHEDULER = '{other}' replaces the framework's scheduler" in refused.stderr
    assert "Remove SCHEDULER from the project's settings" in refused.stderr
    assert site.page_counts() == {}
    own = "SCHEDULER=scrapy.core.scheduler.Scheduler"
    node = start_node("site", redis_url, tmp_path / "n.log", own)
    assert node.wait(timeout=120) == 0
    assert site.page_counts() == {f"/page/{i}.html": 1 for i in range(3)}


def test_a_pipeline_ordered_after_999_runs_before_items_are_stored(make_site, redis_url, tmp_path):
    """The item store ran at order 999: a project pipeline at 1000 ran after
    it, so the items it dropped were exported and its changes were not
    (2 nodes: 31 items where plain Scrapy has 20, none with its field)."""
    site = make_site(4)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    late = 'ITEM_PIPELINES={"tests.late_pipeline.LatePipeline": 1000}'
    assert start_node("site", redis_url, tmp_path / "n.log", late).wait(timeout=120) == 0
    out = tmp_path / "items.jsonl"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    items = read_jsonl(out)
    assert sorted(i["url"].rsplit("/", 1)[1] for i in items) == ["0.html", "2.html", "3.html"]
    assert all(i["late"] is True for i in items), items


def test_a_project_dupefilter_is_said_to_be_unused(make_site, redis_url, tmp_path):
    """DUPEFILTER_CLASS was ignored in silence (helper 34: the docs'
    query-ignoring filter, 31 pages in plain Scrapy, 129 on 2 nodes)."""
    site = make_site(2)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    log = tmp_path / "n.log"
    own = "DUPEFILTER_CLASS=scrapy.dupefilters.BaseDupeFilter"
    # Scrapy's queue settings, its breadth-first recipe, were ignored in
    # silence too (helper 37: plain Scrapy reached depth 15, the frontier 6).
    fifo = "SCHEDULER_MEMORY_QUEUE=scrapy.squeues.FifoMemoryQueue"
    assert start_node("site", redis_url, log, own, fifo).wait(timeout=120) == 0
    text = log.read_text()
    assert "DUPEFILTER_CLASS = scrapy.dupefilters.BaseDupeFilter is not used" in text, text
    assert "Put a custom duplicate rule in a request fingerprinter" in text
    assert "SCHEDULER_MEMORY_QUEUE = scrapy.squeues.FifoMemoryQueue is not used" in text
    assert "DEPTH_PRIORITY = 1 gives breadth-first" in text


def test_a_seed_key_of_the_wrong_type_is_named(make_site, redis_url, rclient, tmp_path):
    """Seeds `redis-cli set` into the seed key (a string) were passed over in
    silence: exit 0, nothing fetched, status "start urls 0" (helper 38;
    scrapy-redis raises WRONGTYPE). The node says what the key must be."""
    site = make_site(2)
    rclient.set("site:start_urls", site.url("/page/0.html"))
    log = tmp_path / "n.log"
    assert start_node("site", redis_url, log).wait(timeout=120) == 0
    text = log.read_text()
    assert "site:start_urls is a string: seeds are read from a list (LPUSH)" in text, text


@pytest.mark.parametrize("slow", [60, 6])
def test_a_stop_timeout_still_closes_the_spider_as_scrapy_does(
    make_site, redis_url, rclient, tmp_path, slow
):
    """SIGTERM while a page takes longer than CRAWLER_STOP_TIMEOUT: the
    node hands it back and stops, but through Scrapy's close (reason
    ``shutdown``): its feed is finished, its pipelines' close_spider runs,
    and it leaves the crawl. Before, it stopped the reactor: the feed was
    left empty (the items it had scraped were missing from it), no
    close_spider, no stats, and `scrapy status` showed the node LOST
    (found crawling a 6 MB page served at 400 kB/s). A page handed back
    that arrives while the node closes (slow=6: during the pipeline's slow
    close) is left to the node that fetches it again: it was scraped into
    this node's feed too, with an AlreadyCalledError logged (review)."""
    site = make_site(3, {"/page/2.html": slow})
    seeds = [site.url(f"/page/{i}.html") for i in range(3)]
    assert run_scrapy(["seed", "site", *seeds], redis_url).returncode == 0
    marker, feed, log = tmp_path / "closed", tmp_path / "feed.json", tmp_path / "n.log"
    settings = [
        f"LOG_FILE={log}",
        "CRAWLER_STOP_TIMEOUT=2",
        "CLOSESPIDER_TIMEOUT=0",
        'ITEM_PIPELINES={"tests.slow_close_pipeline.AsyncSlowClosePipeline": 100}',
    ]
    proc = subprocess.Popen(
        [SCRAPY, "crawl", "site", "-o", str(feed), *ANY_TELNET_PORT]
        + [a for s in settings for a in ("-s", s)],
        cwd=ROOT,
        env={**scrapy_env(redis_url), "SLOW_CLOSE_MARKER": str(marker)},
    )
    wait_for(lambda: "/page/0.html" in site.served_at, 60, "page 0")
    time.sleep(1.5)  # page 0 stored; page 2 still on the wire
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert "Still processing 1 requests" in text, text[-3000:]
    assert "Spider closed (shutdown)" in text, text[-3000:]
    assert marker.read_text() == "closed"
    items = json.loads(feed.read_text())
    assert len(items) >= 1
    assert not any("page/2.html" in str(item) for item in items), items
    assert "Error while enqueuing scrape" not in text, text[-3000:]
    status = json.loads(run_scrapy(["status", "site", "--json"], redis_url).stdout)
    assert [n["state"] for n in status["nodes"]] == ["left"], status["nodes"]


def test_closespider_timeout_no_item_does_not_end_a_finished_crawl(make_site, redis_url, tmp_path):
    """CLOSESPIDER_TIMEOUT_NO_ITEM no longer than CRAWLER_FINISH_GRACE: the
    node, out of work and waiting out the grace, was closed by Scrapy's
    extension as producing no items, so every such crawl ended
    ``closespider_timeout_no_item`` and exited 0 over its dead letters,
    where one Scrapy process closes ``finished`` at once (helper 49)."""
    site = make_site(10)
    seeded = run_scrapy(
        ["seed", "site", site.url("/page/0.html"), "http://127.0.0.1:1/"], redis_url
    )
    assert seeded.returncode == 0, seeded.stderr
    log = tmp_path / "n.log"
    node = start_node(
        "site",
        redis_url,
        log,
        "CLOSESPIDER_TIMEOUT_NO_ITEM=1",
        "CRAWLER_FINISH_GRACE=3",
        "RETRY_TIMES=0",
    )
    assert node.wait(timeout=120) == 3, log.read_text()[-3000:]
    text = log.read_text()
    assert "Spider closed (finished)" in text, text[-3000:]
    assert "'item_scraped_count': 10," in text


def test_another_reactor_is_one_error_line(redis_url):
    """A TWISTED_REACTOR other than the asyncio one was refused by the
    scheduler once the node started, with two tracebacks (the second
    Scrapy's "Engine slot not assigned"); it is one error line before
    anything starts, as the other setup errors are (helper 49)."""
    epoll = "TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor"
    result = run_scrapy(["crawl", "site", "-s", epoll], redis_url)
    assert result.returncode == 1
    assert "error: the Redis scheduler needs the asyncio reactor" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_runspider_makes_crawls_checks_before_the_node_starts(make_site, redis_url, tmp_path):
    """``scrapy runspider`` in a project (as scrapy-redis's example project
    runs its spiders) makes the checks ``scrapy crawl`` makes, with the same
    code: another reactor is one error line (it was the scheduler's two
    tracebacks, exit 1), and a spider whose own ADDONS leave the project's
    add-on out is refused (it ran as plain Scrapy, each node crawling
    everything, exit 0, Redis untouched)."""
    site = make_site(3)
    spider = tmp_path / "one.py"
    spider.write_text(
        "import scrapy\n\n\n"
        "class NoopAddon:\n"
        "    pass\n\n\n"
        "class One(scrapy.Spider):\n"
        "    name = 'one'\n"
        f"    start_urls = [{site.url('/page/0.html')!r}]\n"
        "    custom_settings = CUSTOM\n\n"
        "    def parse(self, response):\n"
        "        yield {'url': response.url}\n"
    )
    source = spider.read_text()
    spider.write_text(source.replace("CUSTOM", "{}"))
    epoll = "TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor"
    result = run_scrapy(["runspider", str(spider), "-s", epoll], redis_url)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: the Redis scheduler needs the asyncio reactor" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert site.page_counts() == {}

    spider.write_text(source.replace("CUSTOM", "{'ADDONS': {'one.NoopAddon': 10}}"))
    result = run_scrapy(["runspider", str(spider), "-s", "LOG_LEVEL=INFO"], redis_url)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: spider 'one' sets ADDONS in its custom_settings without" in result.stderr
    assert site.page_counts() == {}


def _dumped_stat(log: str, name: str) -> int | None:
    """Stat *name* in the stats a crawl dumped as it closed."""
    dump = log.rfind("Dumping Scrapy stats")
    assert dump >= 0, log[-2000:]
    found = re.search(rf"'{re.escape(name)}': (\d+)", log[dump:])
    return int(found.group(1)) if found else None


def test_scrapys_scheduler_and_dupefilter_stats_as_plain_scrapy_counts_them(
    make_site, redis_url, tmp_path
):
    """Each node's closing stats have Scrapy's ``scheduler/enqueued``,
    ``scheduler/dequeued`` and ``dupefilter/filtered`` (and scrapy-redis's
    ``scheduler/enqueued/redis``, ``scheduler/dequeued/redis``); summed over
    two nodes they are what plain Scrapy's scheduler and RFPDupeFilter count
    for the same crawl, but for the second node's start request, filtered
    as a duplicate of the first's. They were absent (only the framework's
    ``crawler/*`` were there)."""
    site = make_site(40)
    start = f"start_url={site.url('/page/0.html')}"
    plain = run_scrapy(
        ["crawl", "site", "-a", start, "-s", "ADDONS={}", "-s", "LOG_LEVEL=INFO"], redis_url
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "'scheduler/enqueued/memory'" in plain.stderr  # Scrapy's own scheduler ran
    logs = [tmp_path / f"node{n}.log" for n in (1, 2)]
    nodes = [start_node("site", redis_url, log, spider_args=[start]) for log in logs]
    assert wait_nodes(nodes, 120) == [0, 0]
    texts = [log.read_text() for log in logs]

    def total(name: str) -> int:
        return sum(_dumped_stat(text, name) or 0 for text in texts)

    for text in texts:
        assert _dumped_stat(text, "crawler/commits")  # the framework's scheduler ran
        for name in ("scheduler/enqueued", "scheduler/dequeued"):
            assert _dumped_stat(text, f"{name}/redis") == _dumped_stat(text, name), name
        local = (_dumped_stat(text, "crawler/duplicates") or 0) + (
            _dumped_stat(text, "crawler/duplicates_local") or 0
        )
        assert (_dumped_stat(text, "dupefilter/filtered") or 0) == local
    assert total("crawler/duplicates") >= 1  # the second start request, in Redis
    assert total("scheduler/enqueued") == _dumped_stat(plain.stderr, "scheduler/enqueued")
    assert total("scheduler/dequeued") == _dumped_stat(plain.stderr, "scheduler/dequeued")
    filtered = _dumped_stat(plain.stderr, "dupefilter/filtered")
    assert filtered and total("dupefilter/filtered") == filtered + 1


def test_crawls_the_test_helpers_start_listen_for_telnet_on_any_port(redis_url):
    """run_scrapy's crawls (like start_node's) take any free telnet port:
    crawls of tests on other pytest -n workers raced them for the first of
    Scrapy's range, a rare EADDRINUSE and traceback in one of them."""
    plain = run_scrapy(["crawl", "site", "-s", "ADDONS={}", "-s", "LOG_LEVEL=INFO"], redis_url)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert_any_telnet_port(plain.stderr)


def test_settings_command_shows_what_the_add_on_sets():
    """``scrapy settings --get`` applies the project's add-ons, as a crawl
    does: it printed Scrapy's scheduler and None for the framework's
    settings, values no crawl of the project runs with."""

    def get(*args: str) -> str:
        result = run_scrapy(["settings", *args], None)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip()

    assert get("--get", "SCHEDULER") == "crawler.scheduler.RedisScheduler"
    assert get("--getfloat", "CRAWLER_LEASE_TIME") == "30.0"
    assert "crawler.pipelines.RedisItemPipeline" in get("--get", "ITEM_PIPELINES")
    # Without the add-on, Scrapy's own values.
    assert get("--get", "SCHEDULER", "-s", "ADDONS={}") == "scrapy.core.scheduler.Scheduler"
    assert get("--get", "CRAWLER_LEASE_TIME", "-s", "ADDONS={}") == "None"
    # A setting the add-on refuses is one error line, as on `scrapy crawl`.
    bad = run_scrapy(["settings", "--get", "SCHEDULER", "-s", "SCHEDULER=nowhere.Bar"], None)
    assert bad.returncode == 1, bad.stderr[-3000:]
    assert "error: SCHEDULER = 'nowhere.Bar' cannot be imported" in bad.stderr
