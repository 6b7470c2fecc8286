"""Politeness across the whole cluster: real ``scrapy crawl`` nodes against
servers on their own loopback addresses (each its own domain), which record
when every request arrived and how many were in progress at once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from crawler.scripts import script_source
from tests.conftest import run_scrapy, start_node, wait_nodes
from tests.hosts import HostSite, loopback_available

HOSTS = ("127.0.0.2", "127.0.0.3")
# Time between a node reporting a request's start to Redis and the request
# reaching the server: both happen right after the request enters the
# downloader, on the same machine.
JITTER = 0.02

# Gaps between requests as the server saw them: run alone (marker `timing`).
pytestmark = [
    pytest.mark.timing,
    pytest.mark.skipif(
        not all(loopback_available(h) for h in HOSTS), reason="needs 127.0.0.2 and 127.0.0.3"
    ),
]


@pytest.fixture
def hosts() -> Iterator[Callable[..., HostSite]]:
    made: list[HostSite] = []

    def factory(host: str, pages: int, **kwargs: Any) -> HostSite:
        site = HostSite(host, pages, **kwargs)
        made.append(site)
        return site

    yield factory
    for site in made:
        site.close()


def crawl(
    redis_url: str, tmp_path: Path, seeds: list[str], nodes: int, *settings: str
) -> list[str]:
    """Seed, run *nodes* nodes to the end, and return their logs."""
    seeded = run_scrapy(["seed", "site", *seeds], redis_url)
    assert seeded.returncode == 0, seeded.stderr
    procs = [
        start_node("site", redis_url, tmp_path / f"node{n}.log", *settings) for n in range(nodes)
    ]
    codes = [p.wait(timeout=240) for p in procs]
    logs = [(tmp_path / f"node{n}.log").read_text() for n in range(nodes)]
    assert codes == [0] * nodes, logs
    for log in logs:
        assert "Traceback" not in log, log
    return logs


def stat_of(log: str, name: str) -> int:
    """A node's Scrapy stat *name*, as its log dumps it at the end (0 if absent)."""
    return sum(
        int(line.split(":")[1].strip(" ,")) for line in log.splitlines() if f"'{name}'" in line
    )


def released_unsent(logs: list[str]) -> int:
    """Requests the nodes handed back for waiting past their hold."""
    return sum(stat_of(log, "crawler/released_unsent") for log in logs)


def assert_complete(site: HostSite, logs: list[str] | None = None) -> None:
    """Every page served exactly once (429 answers aside); nothing under /private/."""
    paths = [h.path for h in site.all_hits() if h.path.startswith("/page/") and h.status == 200]
    assert sorted(paths) == sorted(f"/page/{i}.html" for i in range(site.pages))
    # On failure: what each node said about robots.txt.
    said = [
        [line for line in log.splitlines() if "robots" in line.lower() and "crawler." in line]
        + [line for line in log.splitlines() if "'robotstxt/" in line]
        for log in logs or []
    ]
    assert not [p for p in site.paths() if p.startswith("/private/")], (site.paths(), said)


def test_delay_holds_across_three_nodes(hosts, redis_url, tmp_path):
    a, b = hosts(HOSTS[0], 12), hosts(HOSTS[1], 12)
    crawl(
        redis_url,
        tmp_path,
        [a.url("/page/0.html"), b.url("/page/0.html")],
        3,
        "DOWNLOAD_DELAY=0.2",
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    )
    for site in (a, b):
        assert_complete(site)
        gap = site.min_gap()
        print(f"{site.host}: {len(site.all_hits())} requests, min gap {gap:.3f}s")
        assert gap >= 0.2 - JITTER, site.closest()
        # Held to the delay, not slowed far beyond it.
        hits = site.all_hits()
        span = hits[-1].arrived - hits[0].arrived
        assert span < 0.2 * (len(hits) - 1) * 2.5 + 2, span


def test_jitter_keeps_scrapy_meaning(hosts, redis_url, tmp_path):
    """With Scrapy's default ±50 % jitter, gaps vary between 0.5x and 1.5x."""
    # 0.4 s: the gaps of a 0.2 s delay often never fell below the ~0.25 s a
    # start report takes to reach Redis and the next lease, hiding the jitter
    # (gaps 0.242-0.265 s in one run, on this code and the code before it).
    a = hosts(HOSTS[0], 16)
    crawl(redis_url, tmp_path, [a.url("/page/0.html")], 2, "DOWNLOAD_DELAY=0.4")
    assert_complete(a)
    times = [h.arrived for h in a.all_hits()]
    gaps = [y - x for x, y in pairwise(times)]
    print(f"gaps: min {min(gaps):.3f}s max {max(gaps):.3f}s")
    assert min(gaps) >= 0.2 - JITTER
    assert max(gaps) - min(gaps) > 0.05  # the delay is drawn, not fixed


def test_concurrency_limit_holds_across_three_nodes(hosts, redis_url, tmp_path, rclient):
    a, b = hosts(HOSTS[0], 30, latency=0.3), hosts(HOSTS[1], 30, latency=0.3)
    crawl(
        redis_url,
        tmp_path,
        [a.url("/page/0.html"), b.url("/page/0.html")],
        3,
        "CONCURRENT_REQUESTS_PER_DOMAIN=2",
    )
    for site in (a, b):
        assert_complete(site)
        print(f"{site.host}: max in progress {site.max_inflight}")
        assert site.max_inflight == 2
    # Every slot was handed back (the "\0" field keeps the hash a hash table).
    assert set(rclient.hkeys("{site}:dbusy")) <= {b"\0"}
    assert rclient.zcard("{site}:parked") == 0


def test_slow_polite_domain_does_not_hold_back_a_fast_one(hosts, redis_url, tmp_path, rclient):
    fast_alone = hosts(HOSTS[1], 200)
    (tmp_path / "alone").mkdir()
    crawl(redis_url, tmp_path / "alone", [fast_alone.url("/page/0.html")], 2)
    alone = fast_alone.page_hits()
    alone_span = alone[-1].arrived - alone[0].arrived
    fast_alone.close()
    rclient.flushall()  # a fresh crawl in the same Redis
    slow, fast = hosts(HOSTS[0], 13), hosts(HOSTS[1], 200)
    # The slow domain is seeded first, so its requests are ahead in the queue.
    crawl(
        redis_url,
        tmp_path,
        [slow.url("/page/0.html"), slow.url("/page/1.html"), fast.url("/page/0.html")],
        2,
        "DOWNLOAD_SLOTS=" + json.dumps({HOSTS[0]: {"delay": 1.0}}),
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    )
    assert_complete(fast)
    assert_complete(slow)
    mixed = fast.page_hits()
    mixed_span = mixed[-1].arrived - mixed[0].arrived
    slow_hits = slow.all_hits()
    print(
        f"fast domain: {alone_span:.2f}s alone, {mixed_span:.2f}s beside the slow one; "
        f"slow domain min gap {slow.min_gap():.3f}s over {len(slow_hits)} requests"
    )
    assert slow.min_gap() >= 1.0 - JITTER, slow.closest()
    # The fast domain finished long before the slow one...
    assert mixed[-1].arrived < slow_hits[-1].arrived - 5
    # ...at close to its rate alone.
    assert mixed_span <= alone_span * 1.5 + 1.0


def first_429(site: HostSite) -> tuple[float, list[tuple[str, float]], float]:
    """When the 429 was answered, what arrived in the next 2 s (path, after),
    and when the page that got it was fetched again (after)."""
    hits = site.all_hits()
    first = next(h for h in hits if h.status == 429)
    during = [
        (h.path, round(h.arrived - first.finished, 3))
        for h in hits
        if first.finished < h.arrived < first.finished + 2.0
    ]
    again = [h for h in hits if h.path == first.path and h.status == 200]
    assert len(again) == 1
    return first.finished, during, again[0].arrived - first.finished


@pytest.mark.parametrize("per_domain", [1, 8])
def test_retry_after_pauses_the_domain_for_every_node(
    hosts, redis_url, tmp_path, rclient, per_domain
):
    a = hosts(HOSTS[0], 40, throttle={"/page/4.html": "2"})
    logs = crawl(
        redis_url,
        tmp_path,
        [a.url("/page/0.html")],
        3,
        f"CONCURRENT_REQUESTS_PER_DOMAIN={per_domain}",
    )
    assert_complete(a, logs)
    _, during, refetched = first_429(a)
    print(
        f"per-domain {per_domain}: in the 2 s after the 429: {during}; refetched {refetched:.3f}s"
    )
    if per_domain == 1:
        assert during == []
    else:
        # Requests that were already on their way when the pause reached
        # Redis arrive within moments; after that, nothing until the pause
        # is over. The pause reached Redis at most 2 s (Retry-After) before
        # the page was fetched again: 0-0.1 s after the 429 alone on the
        # machine, up to 0.27 s beside the suite's other tests, where the
        # node that got it took that long to report it.
        reported = max(0.0, refetched - 2.0)
        assert all(after < reported + 0.1 for _, after in during), (reported, during)
    assert refetched >= 2.0
    assert any("answered 429" in log for log in logs)
    assert int(rclient.hget("{site}:stats", "dead") or 0) == 0


def test_retry_after_pauses_the_domain_when_scrapy_keys_by_ip(hosts, redis_url, tmp_path, rclient):
    """With CONCURRENT_REQUESTS_PER_IP, Scrapy's downloader sets a request's
    download_slot to its IP. A 429 must still pause its domain, and the
    request sent again must queue under its domain, not under the IP."""
    a = hosts("127.0.0.1", 30, throttle={"/page/4.html": "2"})
    logs = crawl(
        redis_url,
        tmp_path,
        [f"http://localhost:{a.port}/page/0.html"],
        3,
        "CONCURRENT_REQUESTS_PER_DOMAIN=1",
        "CONCURRENT_REQUESTS_PER_IP=4",
    )
    assert_complete(a, logs)
    _, during, refetched = first_429(a)
    print(f"in the 2 s after the 429: {during}; refetched {refetched:.3f}s")
    assert during == []
    assert refetched >= 2.0
    # Paused by its domain (the pause itself is gone: a page of the domain
    # came back fine after it, so its next backoff starts over).
    said = [line for log in logs for line in log.splitlines() if " answered 429 for " in line]
    assert said and all("WARNING: localhost answered 429" in line for line in said), said
    assert rclient.hkeys("{site}:dbackoff") == []


def test_exponential_backoff_without_retry_after(hosts, redis_url, tmp_path):
    a = hosts(HOSTS[0], 10, throttle={"/page/2.html": ""})
    crawl(
        redis_url,
        tmp_path,
        [a.url("/page/0.html")],
        2,
        "CRAWLER_BACKOFF_BASE=1.5",
        "CONCURRENT_REQUESTS_PER_DOMAIN=1",
    )
    assert_complete(a)
    _, during, refetched = first_429(a)
    assert [after for _, after in during if after < 1.5] == []
    assert refetched >= 1.5


def test_a_page_answering_503_for_good_holds_its_domain_only_a_few_pauses(
    hosts, redis_url, tmp_path
):
    """A broken page answering 503 (no Retry-After) every time: before, ten
    doubling pauses of its domain (about 40 minutes at the defaults; 511 s
    here) before RetryMiddleware gave up. Now 3 (CRAWLER_BACKOFF_RETRIES_503),
    then Scrapy's 2 retries and the dead letters."""
    a = hosts(HOSTS[0], 10, broken=frozenset({"/page/3.html"}))  # no children
    assert run_scrapy(["seed", "site", a.url("/page/0.html")], redis_url).returncode == 0
    began = time.monotonic()
    # Two nodes: one of them, whose last commit came before the pause, once
    # kept its leased requests of the domain for good (crawler.pauses; 3
    # runs in 40 wedged, others stood idle 5-35 s).
    logs = [tmp_path / f"node{n}.log" for n in range(2)]
    settings = ("CRAWLER_BACKOFF_BASE=0.5",)
    codes = wait_nodes([start_node("site", redis_url, log, *settings) for log in logs], 90)
    took = time.monotonic() - began
    assert codes == [3, 3], [log.read_text()[-3000:] for log in logs]  # a dead letter
    broken = [h for h in a.all_hits() if h.path == "/page/3.html"]
    print(f"{len(broken)} answers 503, done in {took:.1f}s")
    assert len(broken) == 3 + 1 + 2 and {h.status for h in broken} == {503}
    fine = sorted(h.path for h in a.all_hits() if h.path.startswith("/page/") and h.status == 200)
    assert fine == sorted(f"/page/{i}.html" for i in range(10) if i != 3)
    assert took < 30


def test_robots_txt_once_per_cluster_and_crawl_delay(hosts, redis_url, tmp_path, rclient):
    a = hosts(HOSTS[0], 10, robots="User-agent: *\nCrawl-delay: 0.4\nDisallow: /private/\n")
    # Pages that take a moment, so that requests overlap there at any load.
    b = hosts(HOSTS[1], 40, latency=0.05)
    logs = crawl(redis_url, tmp_path, [a.url("/page/0.html"), b.url("/page/0.html")], 3)
    for site in (a, b):
        assert_complete(site)
        assert site.paths().count("/robots.txt") == 1, site.paths()
    print(f"{a.host}: min gap {a.min_gap():.3f}s (Crawl-delay 0.4); {b.host}: {b.max_inflight}")
    assert a.min_gap() >= 0.4 - JITTER, a.closest()
    assert b.max_inflight > 1  # no Crawl-delay there: not held to one at a time
    assert any("Crawl-delay of 0.4s" in log for log in logs)
    # The other nodes used the shared copy.
    stats = {k.decode(): v for k, v in rclient.hgetall("{site}:clusterstats").items()}
    assert int(stats["robotstxt/request_count"]) == 2
    assert int(stats.get("robotstxt/shared", 0)) >= 1


def test_a_redirect_to_another_host_is_polite_to_that_host(hosts, redis_url, tmp_path, rclient):
    """Scrapy's downloader writes the host it fetched into the request's
    download_slot, and RedirectMiddleware copies it to the redirect: a seed
    on one host redirecting to another (http://a.example to
    https://www.a.example) had the second host's Crawl-delay recorded for
    the first, and the second fetched without it (its pages 2-107 ms apart
    under a Crawl-delay of 2 s), while the first, which asked for none,
    was held to it."""
    b = hosts(HOSTS[1], 8, robots="User-agent: *\nCrawl-delay: 0.4\nDisallow: /private/\n")
    a = hosts(HOSTS[0], 1, redirects={"/go": b.url("/page/0.html")})
    crawl(redis_url, tmp_path, [a.url("/go")], 2)
    assert_complete(b)
    print(f"{b.host}: min gap {b.min_gap():.3f}s (Crawl-delay 0.4)")
    assert rclient.hgetall("{site}:dcrawl") == {HOSTS[0].encode(): b"0", HOSTS[1].encode(): b"400"}
    assert b.min_gap() >= 0.4 - JITTER, b.closest()


def test_the_longest_crawl_delay_of_a_domain_is_kept(redis_url, rclient):
    """One domain (host name) has a robots.txt per scheme and port, each
    read on its own: the last one read replaced the others' Crawl-delay, and
    one that could not be fetched (0) lifted it (helper 39: once a second
    port's robots.txt without a delay was read, the first port's pages
    came 0-94 ms apart instead of 2 s). Each one's delay is kept as last
    read, and the domain's is the longest; one read again replaces its own,
    smaller too (the longest ever read was kept for good); one that could
    not be fetched (-1) keeps its own."""
    script = rclient.register_script(script_source("crawl_delay"))
    keys = ["{site}:dcrawl", "{site}:dcrawlsite"]
    a, b = "http://example.com", "https://example.com"
    steps = [
        (a, 0, 0),
        (b, 2000, 2000),
        (a, 0, 2000),
        (a, 500, 2000),
        (a, 3000, 3000),
        (a, -1, 3000),
        (a, 0, 2000),  # a read again without a delay: b's is the longest
        (b, -1, 2000),
        (b, 100, 100),
        (b, 0, 0),
    ]
    for site, delay, kept in steps:
        assert script(keys=keys, args=["example.com", site, delay]) == kept, (site, delay)
        assert rclient.hget(keys[0], "example.com") == str(kept).encode()
    # Never read before, and not fetched: known, without a delay.
    assert script(keys=keys, args=["other.example", "http://other.example", -1]) == 0
    assert rclient.hget(keys[0], "other.example") == b"0"


def test_a_crawl_delay_past_the_limit_is_cut_to_it(hosts, redis_url, tmp_path):
    """A hostile or mistyped robots.txt (Crawl-delay: 1e12) held its
    domain's pages for that long: the nodes never finished (plain Scrapy
    ignores Crawl-delay). It is cut to CRAWLER_MAX_CRAWL_DELAY, with a
    warning naming the site."""
    a = hosts(HOSTS[0], 4, robots="User-agent: *\nCrawl-delay: 1e12\nDisallow: /private/\n")
    logs = crawl(redis_url, tmp_path, [a.url("/page/0.html")], 2, "CRAWLER_MAX_CRAWL_DELAY=0.5")
    assert_complete(a)
    print(f"{a.host}: min gap {a.min_gap():.3f}s")
    assert a.min_gap() >= 0.5 - JITTER, a.closest()
    warning = "robots.txt asks for a Crawl-delay of 1e+12s; keeping 0.5s (CRAWLER_MAX_CRAWL_DELAY)"
    assert any(warning in log for log in logs), logs


def test_every_request_waiting_for_robots_txt_obeys_it(hosts, redis_url, tmp_path, rclient):
    """Several requests of one domain waiting for the node's robots.txt parser
    all get it (Twisted's asFuture gave it to the first only, None - "allow
    everything" - to the others; CI once fetched /private/secret.html)."""
    a = hosts(HOSTS[0], 1)
    robots = b"BUser-agent: *\nDisallow: /private/\n"
    rclient.set(f"{{site}}:robots:http://{HOSTS[0]}:{a.port}", robots)
    rclient.hset("{site}:dcrawl", HOSTS[0], 0)  # known: all seeds leased at once
    seeds = [a.url("/page/0.html")] + [a.url(f"/private/{i}.html") for i in range(6)]
    logs = crawl(redis_url, tmp_path, seeds, 1, "CONCURRENT_REQUESTS_PER_DOMAIN=8")
    assert_complete(a, logs)


def test_robots_txt_still_obeyed_when_redis_cannot_share_it(hosts, redis_url, tmp_path, rclient):
    """A Redis error on the shared copy (here a real WRONGTYPE: the key holds
    a hash) makes the node fetch robots.txt itself, not allow every page."""
    a = hosts(HOSTS[0], 10)
    rclient.hset(f"{{site}}:robots:http://{HOSTS[0]}:{a.port}", "not", "a string")
    logs = crawl(redis_url, tmp_path, [a.url("/page/0.html")], 1)
    assert_complete(a, logs)
    assert a.paths().count("/robots.txt") == 1, a.paths()
    assert "fetching it on this node" in logs[0]


def test_status_shows_paused_and_throttled_domains(hosts, redis_url, tmp_path):
    a = hosts(HOSTS[0], 30, throttle={"/page/1.html": "6"})
    b = hosts(HOSTS[1], 30)
    seeded = run_scrapy(["seed", "site", a.url("/page/0.html"), b.url("/page/0.html")], redis_url)
    assert seeded.returncode == 0, seeded.stderr
    slots = json.dumps({HOSTS[1]: {"delay": 0.5}})
    node = start_node("site", redis_url, tmp_path / "node.log", f"DOWNLOAD_SLOTS={slots}")
    try:
        deadline = time.monotonic() + 60
        while not any(h.status == 429 for h in a.all_hits()):
            assert time.monotonic() < deadline, "the 429 never came"
            time.sleep(0.1)
        time.sleep(1.0)  # the node commits the pause and b's pages queue up
        shown = run_scrapy(["status", "site"], redis_url)
        js = run_scrapy(["status", "site", "--json"], redis_url)
    finally:
        assert node.wait(timeout=120) == 0
    assert shown.returncode == 0, shown.stderr
    print(shown.stdout)
    assert "domains paused after 429/503: 1" in shown.stdout
    paused_line = next(line for line in shown.stdout.splitlines() if HOSTS[0] in line)
    assert "until" in paused_line and "backoff level 0" in paused_line
    domains = json.loads(js.stdout)["domains"]
    assert [d["domain"] for d in domains["paused"]] == [HOSTS[0]]
    assert 0 < domains["paused"][0]["until_in_s"] <= 6
    waiting = {d["domain"] for d in domains["throttled"]}
    assert HOSTS[0] in waiting  # its requests wait for the pause to end
    assert_complete(a)
    assert_complete(b)


def test_autothrottle_delay_is_shared(hosts, redis_url, tmp_path, rclient):
    a = hosts(HOSTS[0], 15, latency=0.25)
    crawl(
        redis_url,
        tmp_path,
        [a.url("/page/0.html")],
        3,
        "AUTOTHROTTLE_ENABLED=True",
        "AUTOTHROTTLE_START_DELAY=0.05",
        "AUTOTHROTTLE_TARGET_CONCURRENCY=1",
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    )
    assert_complete(a)
    delay = int(rclient.hget("{site}:dauto", HOSTS[0]))
    times = [h.arrived for h in a.page_hits()]
    later_gaps = [y - x for x, y in pairwise(times[3:])]
    print(f"AutoThrottle delay {delay} ms; later gaps min {min(later_gaps):.3f}s")
    # Latency 250 ms at target concurrency 1: the delay rises to the latency...
    assert 240 <= delay <= 400
    # ...for all three nodes together, once it has learnt it.
    assert min(later_gaps) >= 0.24 - JITTER


def test_requests_kept_unsent_past_their_hold_go_back(hosts, redis_url, tmp_path):
    """Nodes whose downloaders are full of slow pages keep requests of a
    polite domain leased and unsent. A domain is held for such a request
    for one lease (2 s here): it goes back to the frontier before that
    runs out, and nothing is leased ahead against a hold (the request may
    still start before it ends). Before, the site saw two requests 4-9 ms
    apart under its 0.5 s delay, in each of three runs."""
    slow, polite = hosts(HOSTS[0], 24, latency=2.0), hosts(HOSTS[1], 24)
    logs = crawl(
        redis_url,
        tmp_path,
        [slow.url("/page/0.html"), polite.url("/page/0.html")],
        2,
        "CONCURRENT_REQUESTS=2",
        "CRAWLER_LEASE_TIME=2",
        "CRAWLER_LEASE_RENEW_INTERVAL=0.5",
        "DOWNLOAD_SLOTS=" + json.dumps({HOSTS[1]: {"delay": 0.5}}),
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    )
    for site in (slow, polite):
        assert_complete(site)
    released = released_unsent(logs)
    print(f"{polite.host}: min gap {polite.min_gap():.3f}s; handed back unsent: {released}")
    assert polite.min_gap() >= 0.5 - JITTER, polite.closest()
    assert released > 0  # the case this test is for happened


def crawl_one_ip(
    hosts: Callable[..., HostSite],
    redis_url: str,
    tmp_path: Path,
    slow_pages: int,
    latency: float,
    *settings: str,
) -> tuple[HostSite, list[str]]:
    """Two domains on one IP, CONCURRENT_REQUESTS_PER_IP=1, 2 nodes:
    "localhost" (slow pages) and "127.0.0.1" (16 pages, a 0.5 s delay)."""
    slow, polite = hosts("127.0.0.1", slow_pages, latency=latency), hosts("127.0.0.1", 16)
    logs = crawl(
        redis_url,
        tmp_path,
        [f"http://localhost:{slow.port}/page/0.html", polite.url("/page/0.html")],
        2,
        "CONCURRENT_REQUESTS_PER_IP=1",
        "DOWNLOAD_SLOTS=" + json.dumps({"127.0.0.1": {"delay": 0.5}}),
        "RANDOMIZE_DOWNLOAD_DELAY=False",
        *settings,
    )
    for site in (slow, polite):
        assert_complete(site, logs)
    return polite, logs


def test_a_request_queued_for_its_ip_reports_its_start_when_sent(hosts, redis_url, tmp_path):
    """With CONCURRENT_REQUESTS_PER_IP, Scrapy's downloader queues requests
    of all domains on one IP behind each other. A request of a polite domain
    waiting there behind a slow page of another domain has not started: the
    next request of its domain, from another node, must be timed from when it
    goes out, not from when it reached the downloader."""
    polite, _ = crawl_one_ip(hosts, redis_url, tmp_path, 12, 2.0)
    print(f"{polite.host}: min gap {polite.min_gap():.3f}s over {len(polite.all_hits())}")
    assert polite.min_gap() >= 0.5 - JITTER, polite.closest()


def test_a_request_waits_for_its_ip_on_its_node_not_in_the_downloader(hosts, redis_url, tmp_path):
    """The same two domains on one IP, with pages of the slow one longer
    than a polite request's hold (3 s leases). Queued in Scrapy's downloader
    behind such a page, a polite request went out after its hold ran out,
    just as another node sent the domain's next one (0.001 s apart). It now
    waits on its node until its IP's slot is free, and is handed back if its
    hold runs out first."""
    leases = ("CRAWLER_LEASE_TIME=3", "CRAWLER_LEASE_RENEW_INTERVAL=0.5")
    polite, logs = crawl_one_ip(hosts, redis_url, tmp_path, 10, 4.0, *leases)
    released = released_unsent(logs)
    waits = sum(stat_of(log, "crawler/waited_for_ip") for log in logs)
    print(f"{polite.host}: min gap {polite.min_gap():.3f}s; handed back unsent: {released}")
    assert polite.min_gap() >= 0.5 - JITTER, polite.closest()
    assert waits > 0  # the case this test is for happened: a request waited for its IP


def test_a_stalled_event_loop_does_not_shorten_the_delay(hosts, redis_url, tmp_path):
    """The event loop stalls right after each request's handler is called,
    before the request is written (tests/stall_handler.py, as a garbage
    collection did, 74-83 ms). Its start is timed when the loop turns again,
    so the domain's next request, from either node, still waits the delay
    after it reached the site (timed at the handler call: 0.15 s short
    after a stalled one)."""
    polite = hosts(HOSTS[1], 12)
    logs = crawl(
        redis_url,
        tmp_path,
        [polite.url("/page/0.html")],
        2,
        "DOWNLOAD_HANDLERS=" + json.dumps({"http": "tests.stall_handler.StallingHandler"}),
        "DOWNLOAD_SLOTS=" + json.dumps({HOSTS[1]: {"delay": 0.5}}),
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    )
    assert_complete(polite, logs)
    print(f"{polite.host}: min gap {polite.min_gap():.3f}s over {len(polite.all_hits())}")
    assert polite.min_gap() >= 0.5 - JITTER, polite.closest()


def test_delay_holds_while_nodes_die_and_stop(hosts, redis_url, tmp_path):
    """Busy downloaders (slow pages on one site, 2 requests per node) and
    a polite site beside it; one node is killed -9 and another stopped with
    SIGTERM mid-crawl. The killed node's leases (holds of the polite domain
    among them) expire and come back; the stopped one hands its unsent
    requests back. The delay holds at the polite site throughout, and every
    page is fetched."""
    slow, polite = hosts(HOSTS[0], 24, latency=1.5), hosts(HOSTS[1], 24)
    seeded = run_scrapy(
        ["seed", "site", slow.url("/page/0.html"), polite.url("/page/0.html")], redis_url
    )
    assert seeded.returncode == 0, seeded.stderr
    settings = [
        "CONCURRENT_REQUESTS=2",
        "CRAWLER_LEASE_TIME=3",
        "CRAWLER_LEASE_RENEW_INTERVAL=0.5",
        "DOWNLOAD_SLOTS=" + json.dumps({HOSTS[1]: {"delay": 0.8}}),
        "RANDOMIZE_DOWNLOAD_DELAY=False",
    ]
    nodes = [start_node("site", redis_url, tmp_path / f"n{i}.log", *settings) for i in range(3)]
    for hits, (node, sig) in ((6, (nodes[0], signal.SIGKILL)), (12, (nodes[1], signal.SIGTERM))):
        deadline = time.monotonic() + 60
        while len(polite.page_hits()) < hits and time.monotonic() < deadline:
            time.sleep(0.02)
        node.send_signal(sig)
    codes = wait_nodes(nodes, 180)
    logs = [(tmp_path / f"n{i}.log").read_text() for i in range(3)]
    assert codes[1:] == [0, 0], logs[1:]
    assert "Spider closed (shutdown)" in logs[1] and "Spider closed (finished)" in logs[2]
    for site in (slow, polite):
        fetched = {h.path for h in site.page_hits() if h.status == 200}
        assert fetched == {f"/page/{i}.html" for i in range(site.pages)}
    hits = polite.all_hits()
    print(f"{polite.host}: min gap {polite.min_gap():.3f}s over {len(hits)} requests")
    close = [
        (a.path, b.path, round(a.arrived - hits[0].arrived, 3), round(b.arrived - a.arrived, 3))
        for a, b in pairwise(hits)
        if b.arrived - a.arrived < 0.8 - JITTER
    ]
    assert not close, f"(first, second, first at, gap): {close}"
