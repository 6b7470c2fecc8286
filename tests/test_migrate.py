"""``scrapy migrate SPIDER --from-scrapy-redis`` on state written by a real
scrapy-redis 0.9 crawl (tests/srproject, without this framework), stopped
part way; the framework's nodes then finish that crawl."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from scrapy import Request
from scrapy.utils.request import fingerprint

from crawler.srfingerprint import ScrapyRedisFingerprinter, scrapy_redis_fingerprint
from tests.conftest import SiteServer, run_scrapy, start_node

SRPROJECT = Path(__file__).with_name("srproject")
FINGERPRINTER = "REQUEST_FINGERPRINTER_CLASS=crawler.srfingerprint.ScrapyRedisFingerprinter"
SOURCE_KEYS = ("site:requests", "site:dupefilter")
PAGES = 150
_REQUESTS = re.compile(
    r"(\d+) in site:requests: (\d+) queued, (\d+) already in this crawl, "
    r"(\d+) rejected, (\d+) pickled \(not read\)"
)
_FINGERPRINTS = re.compile(
    r"(\d+) in site:dupefilter: (\d+) added to the seen-set, (\d+) already there"
)


def scrapy_redis_crawl(site: SiteServer, redis_url: str, *settings: str) -> None:
    """A scrapy-redis crawl of *site*, stopped after 40 pages."""
    args = ["crawl", "site", "-a", f"start_url={site.url('/page/0.html')}"]
    for setting in ("CLOSESPIDER_PAGECOUNT=40", *settings):
        args += ["-s", setting]
    result = run_scrapy(args, redis_url, cwd=SRPROJECT)
    assert result.returncode == 0, result.stderr[-3000:]
    # scrapy-redis's scheduler ran, not the framework's (which records
    # scrapy-redis's scheduler/*/redis stats too).
    assert "scheduler/enqueued/redis" in result.stderr
    assert "'crawler/commits'" not in result.stderr
    assert "Spider closed (closespider_pagecount)" in result.stderr


def migrate(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_scrapy(
        ["migrate", "site", "--from-scrapy-redis", "-s", FINGERPRINTER, *args], redis_url
    )


def counts(result: subprocess.CompletedProcess[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """((requests, queued, already, rejected, pickled), (fingerprints, added, already))."""
    requests = _REQUESTS.search(result.stdout)
    assert requests, result.stdout + result.stderr
    fps = _FINGERPRINTS.search(result.stdout)
    return tuple(map(int, requests.groups())), tuple(map(int, fps.groups())) if fps else ()


def source_state(client: redis.Redis) -> dict[str, Any]:
    """Type, length and serialized value of each scrapy-redis key."""
    state = {}
    for key in SOURCE_KEYS:
        kind = client.type(key).decode()
        size = {"zset": client.zcard, "set": client.scard, "list": client.llen}[kind](key)
        state[key] = (kind, size, client.dump(key))
    return state


def finish_with_two_nodes(redis_url: str, tmp_path: Path, *settings: str) -> None:
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [start_node("site", redis_url, log, FINGERPRINTER, *settings) for log in logs]
    try:
        for node, log in zip(nodes, logs, strict=True):
            assert node.wait(timeout=120) == 0, log.read_text()[-3000:]
            assert "Spider closed (finished)" in log.read_text()
    finally:
        for node in nodes:
            node.kill()


def assert_every_page_fetched_once(site: SiteServer) -> None:
    fetched = site.page_counts()
    assert set(fetched) == {f"/page/{i}.html" for i in range(PAGES)}
    assert {p: n for p, n in fetched.items() if n != 1} == {}


def status_json(redis_url: str) -> dict[str, Any]:
    result = run_scrapy(["status", "site", "--json"], redis_url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queued_priorities(client: redis.Redis) -> set[int]:
    return {int(p) for p in client.zrange("{site}:prios", 0, -1)}


def source_priorities(client: redis.Redis) -> set[int]:
    return {-int(score) for _, score in client.zrange("site:requests", 0, -1, withscores=True)}


@pytest.mark.parametrize("partitions", [1, 3])
def test_json_queue_is_imported_and_the_nodes_finish_the_crawl(
    make_site, redis_url, rclient, tmp_path, partitions
):
    """With CRAWLER_PARTITIONS=3 the fingerprints (which do not say their
    domain) all went to the first partition, and the nodes fetched again
    every page scrapy-redis had fetched (helper 40): 127.0.0.1 is in the
    third. They are marked seen in every partition."""
    site = make_site(PAGES)
    split = ("-s", f"CRAWLER_PARTITIONS={partitions}")
    scrapy_redis_crawl(site, redis_url, "SCHEDULER_SERIALIZER=srsite.jsonserializer")
    before = source_state(rclient)
    waiting, fps = before["site:requests"][1], before["site:dupefilter"][1]
    assert before["site:requests"][0] == "zset" and 0 < waiting < PAGES
    assert len(site.page_counts()) + waiting == fps

    # Scrapy's own fingerprints are not scrapy-redis's: refused, nothing written.
    refused = run_scrapy(["migrate", "site", "--from-scrapy-redis"], redis_url)
    assert refused.returncode == 1
    assert "REQUEST_FINGERPRINTER_CLASS = 'crawler.srfingerprint.ScrapyRedisFingerprinter'" in (
        refused.stderr
    )
    assert not rclient.keys("{site}*")

    first = migrate(redis_url, *split)
    assert first.returncode == 0, first.stdout + first.stderr
    assert counts(first) == ((waiting, waiting, 0, 0, 0), (fps, fps - waiting, waiting))
    assert "start URLs    0 in site:start_urls" in first.stdout
    if partitions == 1:
        assert queued_priorities(rclient) == source_priorities(rclient)
    # Every fingerprint once, not once per partition (it was 3x with 3).
    assert status_json(redis_url)["seen"] == fps

    again = migrate(redis_url, *split)
    assert again.returncode == 0, again.stderr
    assert counts(again) == ((waiting, 0, waiting, 0, 0), (fps, 0, fps))
    assert "nothing new: everything there was imported before" in again.stdout

    finish_with_two_nodes(redis_url, tmp_path, f"CRAWLER_PARTITIONS={partitions}")
    assert_every_page_fetched_once(site)
    assert source_state(rclient) == before


def test_pickled_queue_needs_allow_pickle_then_bloom_nodes_finish(
    make_site, redis_url, rclient, tmp_path
):
    site = make_site(PAGES)
    scrapy_redis_crawl(site, redis_url)  # scrapy-redis's default: pickle
    before = source_state(rclient)
    waiting, fps = before["site:requests"][1], before["site:dupefilter"][1]
    bloom = ("-s", "CRAWLER_SEEN_MODE=bloom", "-s", "CRAWLER_BLOOM_CAPACITY=200")

    unread = migrate(redis_url, *bloom)
    assert unread.returncode == 1
    assert counts(unread) == ((waiting, 0, 0, 0, waiting), ())
    assert "run again with --allow-pickle" in unread.stderr
    assert "fingerprints not imported" in unread.stderr
    assert rclient.zcard("{site}:prios") == 0 and not rclient.exists("{site}:bloom")

    allowed = migrate(redis_url, *bloom, "--allow-pickle")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert counts(allowed) == ((waiting, waiting, 0, 0, 0), (fps, fps - waiting, waiting))
    assert queued_priorities(rclient) == source_priorities(rclient)
    again = migrate(redis_url, *bloom, "--allow-pickle")
    assert counts(again) == ((waiting, 0, waiting, 0, 0), (fps, 0, fps))

    finish_with_two_nodes(
        redis_url, tmp_path, "CRAWLER_SEEN_MODE=bloom", "CRAWLER_BLOOM_CAPACITY=200"
    )
    assert_every_page_fetched_once(site)
    assert source_state(rclient) == before


class _Boom:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_a_pickle_is_never_loaded_without_the_flag(redis_url, rclient, tmp_path):
    marker = tmp_path / "unpickled"
    rclient.zadd("site:requests", {pickle.dumps(_Boom(marker), protocol=5): 0})
    result = migrate(redis_url)
    assert result.returncode == 1
    assert counts(result)[0] == (1, 0, 0, 0, 1)
    assert not marker.exists()
    # What the help text warns of: with the flag, the pickle's code runs.
    flagged = migrate(redis_url, "--allow-pickle")
    assert marker.exists()
    assert counts(flagged)[0] == (1, 0, 0, 1, 0)
    assert "not a request" in flagged.stderr


def _entry(url: str, **fields: Any) -> str:
    """A queue entry as scrapy-redis writes it with a JSON serializer."""
    d = {"url": url, "callback": "parse", "errback": None, "headers": {}, "body": ""}
    d.update({"cookies": {}, "meta": {}, "encoding": "utf-8", "flags": [], "cb_kwargs": {}})
    d.update({"dont_filter": False, "method": "GET", "priority": 0}, **fields)
    return json.dumps(d)


def test_rejected_entries_are_reported_and_hold_back_the_fingerprints(redis_url, rclient):
    entries = {
        _entry("http://a.test/1", priority=3): -3,
        _entry("http://a.test/again", dont_filter=True): 0,
        _entry("http://a.test/2", callback="gone"): 0,
        _entry("http://a.test/3", _class="os.system"): 0,
        "\x00garbage": 0,
    }
    rclient.zadd("site:requests", entries)
    fetched = scrapy_redis_fingerprint(Request("http://a.test/fetched"))
    rclient.sadd("site:dupefilter", fetched, scrapy_redis_fingerprint(Request("http://a.test/1")))
    result = migrate(redis_url)
    assert result.returncode == 1
    assert counts(result) == ((5, 2, 0, 3, 0), ())
    err = result.stderr
    assert "rejected: http://a.test/2: callback 'gone' is not a method of spider 'site'" in err
    assert "request class 'os.system' is not in CRAWLER_REQUEST_CLASSES" in err
    assert "neither JSON nor pickle" in err
    assert "fingerprints not imported: 3 queued requests were not" in err
    assert int(rclient.hget("{site}:stats", "seen")) == 2

    dropped = migrate(redis_url, "--drop-unread")
    assert dropped.returncode == 1  # still: three requests were left out
    assert counts(dropped) == ((5, 0, 2, 3, 0), (2, 1, 1))
    (kept,) = rclient.lrange("{site}:q:3", 0, -1)
    assert json.loads(kept.split(b"|", 2)[2])["priority"] == 3


@pytest.mark.parametrize(
    ("queue_class", "order"),
    [
        ("scrapy_redis.queue.FifoQueue", ["a", "b", "c"]),
        ("scrapy_redis.queue.LifoQueue", ["c", "b", "a"]),
    ],
)
def test_list_queues_are_imported_in_the_order_scrapy_redis_pops(
    redis_url, rclient, queue_class, order
):
    for name in ("a", "b", "c"):  # scrapy-redis pushes on the left
        rclient.lpush("site:requests", _entry(f"http://a.test/{name}"))
    result = migrate(redis_url, "-s", f"SCHEDULER_QUEUE_CLASS={queue_class}")
    assert result.returncode == 0, result.stderr
    queued = [json.loads(e.split(b"|", 2)[2])["url"] for e in rclient.lrange("{site}:q:0", 0, -1)]
    assert queued == [f"http://a.test/{name}" for name in order]


@pytest.mark.parametrize("mode", ["exact", "bloom"])
def test_imported_fingerprints_are_seen_members_of_the_same_requests(redis_url, rclient, mode):
    settings = ["-s", f"CRAWLER_SEEN_MODE={mode}", "-s", "CRAWLER_BLOOM_CAPACITY=200"]
    # A false positive (at the default 1e-4, about one run in twenty: the
    # import order follows Redis's per-process hash seed) would count a new
    # fingerprint as seen.
    settings += ["-s", "CRAWLER_BLOOM_ERROR_RATE=1e-9"]
    fetched = ["http://a.test/1", "http://a.test/x?b=2&a=1", "http://a.test/y", "http://a.test/p"]
    members = [scrapy_redis_fingerprint(Request(url)) for url in fetched]
    # More than a Bloom layer holds, so the import grows the filter.
    members += [hashlib.sha1(str(n).encode()).hexdigest() for n in range(499)]
    rclient.sadd("site:dupefilter", *members)
    result = migrate(redis_url, *settings)
    assert result.returncode == 0, result.stderr
    assert counts(result)[1] == (503, 503, 0)
    seeds = "http://a.test/1\nhttp://a.test/x?a=1&b=2\nhttp://a.test/y#top\nhttp://a.test/new\n"
    seeded = run_scrapy(
        ["seed", "site", "-i", "-", "-s", FINGERPRINTER, *settings], redis_url, input=seeds
    )
    assert "1 queued, 3 already seen, 0 rejected" in seeded.stdout, seeded.stderr


def test_fingerprinter_gives_scrapy_redis_fingerprints_not_scrapys():
    fingerprinter = ScrapyRedisFingerprinter()
    for request in (
        Request("http://a.test/x?b=2&a=1#f"),
        Request("http://a.test/form", method="POST", body=b"\x00\xff"),
        Request("http://a.test/", headers={"Cookie": "x=1"}),
    ):
        assert fingerprinter.fingerprint(request).hex() == scrapy_redis_fingerprint(request)
        assert fingerprinter.fingerprint(request) != fingerprint(request)


def test_empty_state_and_missing_flag(redis_url, rclient):
    result = migrate(redis_url)
    assert result.returncode == 0, result.stderr
    assert "nothing to import: no scrapy-redis state of spider 'site'" in result.stdout
    usage = run_scrapy(["migrate", "site"], redis_url)
    assert usage.returncode == 2 and "--from-scrapy-redis" in usage.stderr
    helped = run_scrapy(["migrate", "-h"], redis_url)
    assert "This RUNS CODE FROM REDIS: unpickling executes" in " ".join(helped.stdout.split())


def test_start_urls_stay_where_the_nodes_read_them(redis_url, rclient):
    rclient.sadd("site:start_urls", "http://a.test/1", "http://a.test/2")  # REDIS_START_URLS_AS_SET
    result = migrate(redis_url, "--no-fingerprints")
    assert result.returncode == 0, result.stderr
    assert (
        "start URLs    2 in site:start_urls (set), left in place: this crawl's nodes read them"
        in result.stdout
    )
    assert "fingerprints  not imported from site:dupefilter (--no-fingerprints)" in result.stdout
    assert rclient.scard("site:start_urls") == 2
    elsewhere = migrate(redis_url, "--no-fingerprints", "-s", "CRAWLER_START_URLS_KEY=seeds")
    assert "but this crawl reads seeds: set CRAWLER_START_URLS_KEY = 'site:start_urls'" in (
        elsewhere.stdout
    )


def test_migrate_refused_by_acl_says_what_else_it_reads(redis_url, rclient):
    """As the admin ACL user, migrate was refused and told to use the rules
    of `scrapy acl SPIDER --role admin`, which do not cover scrapy-redis's
    keys (helper 40): the message says what else it reads."""
    rclient.sadd("site:dupefilter", "ab" * 20)
    printed = run_scrapy(["acl", "site", "--role", "admin"], redis_url).stdout.split()
    rules = printed[printed.index("resetkeys") :]  # after ACL SETUSER NAME on >PASSWORD
    rclient.execute_command("ACL", "SETUSER", "migrator", "reset", "on", ">pw", *rules)
    user_url = redis_url.replace("redis://", "redis://migrator:pw@", 1)
    refused = migrate(user_url)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "migrate also reads the scrapy-redis crawl's keys" in refused.stderr, refused.stderr
