"""The frontier's data model against a real Redis: priority order, leases,
acks, reclaiming a dead node's work, and untrusted entries."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import pickle
import time
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from scrapy import Request, Spider

from crawler.codec import _request_dict, decode_request, encode_request
from crawler.commands.deadletters import read_letters
from crawler.exceptions import BadEntry
from crawler.frontier import BATCH_TAIL, Batch, Frontier, Leased, dead_letter
from crawler.keys import make_keys
from crawler.politeness import make_entry, split_entry
from tests.conftest import run_scrapy, start_node

KEYS = make_keys("t", 16, "%(name)s:start_urls")
CLASSES = frozenset({"scrapy.http.request.Request", "scrapy.http.request.form.FormRequest"})


class DemoSpider(Spider):
    name = "t"

    def parse_item(self, response):  # pragma: no cover - resolved by name only
        return None


def run(coro):
    return asyncio.run(coro)


async def frontier(redis_url: str, node: str) -> Frontier:
    return Frontier(aioredis.Redis.from_url(redis_url), KEYS, node)


def push(url: str, prio: int = 0, fp: int | None = None) -> tuple[bytes | None, int, str]:
    fingerprint = None if fp is None else hashlib.sha1(str(fp).encode()).digest()
    return (fingerprint, prio, make_entry(urlsplit(url).hostname or "", json.dumps({"url": url})))


def urls(leased: Leased | None) -> list[str]:
    assert leased is not None
    return [json.loads(split_entry(e)[1])["url"] for _, e, _ in leased.entries]


def test_priority_order_and_fifo_within_priority(redis_url):
    async def scenario() -> list[str]:
        f = await frontier(redis_url, "n1")
        batch = Batch(
            pushes=[
                push("http://a/1"),
                push("http://a/hi1", 5),
                push("http://a/2"),
                push("http://a/low", -3),
                push("http://a/hi2", 5),
            ]
        )
        await f.commit(batch)
        got = await f.lease(10, 30_000)
        await f.client.aclose()
        return urls(got)

    assert run(scenario()) == [
        "http://a/hi1",
        "http://a/hi2",
        "http://a/1",
        "http://a/2",
        "http://a/low",
    ]


def test_batch_tail_names_every_other_field():
    """The worker splits and re-joins batches by these names."""
    assert {"pushes", "items", *BATCH_TAIL} == {f.name for f in dataclasses.fields(Batch)}


def test_a_duplicate_within_one_commit_loses_to_the_first(redis_url, rclient):
    """Requests are checked in the batch's order, whatever their priority."""

    async def go():
        f = await frontier(redis_url, "n1")
        batch = Batch(pushes=[push("http://a/b", 5, 1), push("http://a/a0", 0, 2)])
        batch.pushes.append(push("http://a/a5", 5, 2))  # same fingerprint as a0
        result = await f.commit(batch)
        assert (result.queued, result.duplicates) == (2, 1)
        leased = await f.lease(10, 30_000)
        await f.client.aclose()
        return leased

    assert urls(run(go())) == ["http://a/b", "http://a/a0"]


def test_seen_set_is_checked_and_set_atomically(redis_url, rclient):
    async def scenario():
        f = await frontier(redis_url, "n1")
        first = await f.commit(Batch(pushes=[push("http://a/1", fp=42), push("http://a/1", fp=42)]))
        second = await f.commit(
            Batch(pushes=[push("http://a/1", fp=42), push("http://a/x", fp=None)])
        )
        await f.client.aclose()
        return first, second

    first, second = run(scenario())
    assert (first.queued, first.duplicates) == (1, 1)
    assert (second.queued, second.duplicates) == (1, 1)  # dont_filter entry always goes in
    assert int(rclient.hget(KEYS.stats, "queued")) == 2


def test_lease_ack_and_reclaim_of_a_dead_node(redis_url, rclient):
    async def scenario():
        dead = await frontier(redis_url, "dead-node")
        live = await frontier(redis_url, "live-node")
        await dead.commit(Batch(pushes=[push(f"http://a/{i}") for i in range(4)]))
        leased = await dead.lease(3, 200)  # a 200 ms lease, never renewed
        assert leased is not None
        taken = leased.entries
        assert len(taken) == 3
        # The node acks one request (its outputs stored in the same script).
        # It had started the first two (they reached its downloader).
        began = f"{taken[1][0]}|0"
        await dead.commit(Batch(pushes=[push("http://a/child")], acks=[taken[0][0]]), began=began)
        assert int(rclient.hget(KEYS.stats, "leased")) == 2
        assert await live.reclaim_expired(5) == (0, 0)  # not expired yet
        await asyncio.sleep(0.3)
        requeued = await live.reclaim_expired(5)
        rest = await live.lease(10, 30_000)
        for f in (dead, live):
            await f.client.aclose()
        return requeued, urls(rest), rest.entries

    requeued, got, rest = run(scenario())
    assert requeued == (2, 0)
    # The two unfinished requests come back first, then the rest in order.
    assert got == ["http://a/1", "http://a/2", "http://a/3", "http://a/child"]
    assert rest[0][1].startswith(b"1|")  # one more delivery counted: it had started
    # The third was prefetched, never started: a crash is not its fault.
    assert rest[1][1].startswith(b"0|")
    assert rclient.zscore(KEYS.nodes, "dead-node") is None
    assert int(rclient.hget(KEYS.stats, "done")) == 1


def test_poison_request_is_dead_lettered_after_max_deliveries(redis_url, rclient):
    async def scenario():
        for n in range(3):
            node = await frontier(redis_url, f"victim-{n}")
            if n == 0:
                await node.commit(Batch(pushes=[push("http://a/poison")]))
            leased = await node.lease(1, 50)
            assert len(leased.entries) == 1
            await node.commit(Batch(), began=f"{leased.entries[0][0]}|1")  # it started
            await asyncio.sleep(0.1)
            reaper = await frontier(redis_url, "reaper")
            await reaper.reclaim_expired(3)
            for f in (node, reaper):
                await f.client.aclose()

    run(scenario())
    letters = [json.loads(x) for x in rclient.lrange(KEYS.dead, 0, -1)]
    assert len(letters) == 1 and "delivered 3 times" in letters[0]["reason"]
    assert json.loads(letters[0]["entry"])["url"] == "http://a/poison"
    assert int(rclient.hget(KEYS.stats, "queued")) == 0


def test_a_page_failing_again_keeps_one_letter_without_scanning_the_list(redis_url, rclient):
    """A recrawled page that fails revisit after revisit has one dead letter
    whose count goes up, and no failure scans the dead list (which made a
    crawl with many failing pages quadratic): among 2,000 other letters, the
    page's later failures call no LREM; the list keeps its first letter in
    place, `deadletters` shows the latest. Requeued, the page's next failure
    is listed again; a letter stored the old way is replaced as before."""
    page, old_page = "ab" * 20, "cd" * 20
    url = "http://a/revisited"

    def letter(reason: str, of: str = page) -> tuple[str, str]:
        return "", dead_letter(reason, f"a|{json.dumps({'url': url})}", "n1", url, page=of)

    def lrems() -> int:
        return int(rclient.info("commandstats").get("cmdstat_lrem", {}).get("calls", 0))

    def shown() -> list[dict]:
        return [shown for _, shown in read_letters(rclient, KEYS)]

    async def commit(*deads: tuple[str, str]) -> None:
        node = await frontier(redis_url, "n1")
        await node.commit(Batch(deads=list(deads)))
        await node.client.aclose()

    others = [("", dead_letter(f"other {n}", "a|{}", "n1")) for n in range(2000)]
    run(commit(letter("HTTP 500"), *others))
    before = lrems()
    run(commit(letter("HTTP 503")))
    run(commit(letter("DNS lookup failed")))
    assert lrems() == before
    assert rclient.llen(KEYS.dead) == 2001
    assert int(rclient.hget(KEYS.stats, "dead")) == 2001
    first = shown()[0]
    assert (first["page"], first["count"], first["reason"]) == (page, 3, "DNS lookup failed")
    assert json.loads(rclient.lindex(KEYS.dead, 0))["reason"] == "HTTP 500"  # kept in place

    raw = rclient.lindex(KEYS.dead, 0)

    async def requeue(count: int) -> int:
        node = await frontier(redis_url, "admin")
        moved = await node.requeue_dead([(raw, f"a|{json.dumps({'url': url})}", 0, count)])
        await node.client.aclose()
        return moved

    # Read at count 2, failed a third time since: its newer letter stays.
    assert run(requeue(2)) == 0
    assert rclient.llen(KEYS.dead) == 2001 and shown()[0]["count"] == 3
    assert run(requeue(3)) == 1
    assert rclient.llen(KEYS.dead) == 2000 and rclient.hget(KEYS.deadpages, page) is None
    run(commit(letter("HTTP 500 again")))
    assert rclient.llen(KEYS.dead) == 2001
    assert [(x["count"], x["reason"]) for x in shown() if x.get("page") == page] == [
        (1, "HTTP 500 again")
    ]

    # Stored before the latest was kept apart: the list's letter is the latest.
    stored = json.dumps({"page": old_page, "count": 4, "reason": "old", "entry": "a|{}"})
    rclient.lpush(KEYS.dead, stored)
    rclient.hset(KEYS.deadpages, old_page, stored)
    assert shown()[0]["reason"] == "old"
    run(commit(letter("new", old_page)))
    assert rclient.llen(KEYS.dead) == 2002  # its old letter out, the new one in
    assert [(x["count"], x["reason"]) for x in shown() if x.get("page") == old_page] == [(5, "new")]
    assert rclient.hget(KEYS.deadpages, old_page).startswith(b"=")


def test_only_a_request_run_alone_reaches_max_on_an_inferred_start(redis_url, rclient):
    """A reclaim counts a delivery for held requests above the node's last
    start report, up to its window: they may have started unreported. With
    a window above 1 that is a guess, so it never takes a request to MAX:
    a good request waiting behind a poison one (found by review: it was
    dead-lettered) keeps its last delivery, which runs alone, under a
    window of 1, where the count is exact."""

    async def crash(node_id: str, want: int, report: str) -> list[str]:
        node = await frontier(redis_url, node_id)
        leased = await node.lease(want, 50)
        ids = [lid for lid, _, _ in leased.entries]
        await node.commit(Batch(), began=report.format(*ids))
        await asyncio.sleep(0.1)
        reaper = await frontier(redis_url, "reaper")
        await reaper.reclaim_expired(3)
        for f in (node, reaper):
            await f.client.aclose()
        return urls(leased)

    async def scenario():
        seeder = await frontier(redis_url, "seed")
        await seeder.commit(Batch(pushes=[push("http://a/poison", 5), push("http://b/good", 4)]))
        await seeder.client.aclose()
        # Three crashes with both above the report, window 2: a guess each
        # time; both stop at MAX - 1.
        for n in range(3):
            got = await crash(f"v{n}", 2, "0|2")
            assert got == ["http://a/poison", "http://b/good"]
        # The poison's last delivery runs alone: window 1, it kills the node.
        assert await crash("alone", 1, "0|1") == ["http://a/poison"]

    run(scenario())
    letters = [json.loads(x) for x in rclient.lrange(KEYS.dead, 0, -1)]
    assert [json.loads(d["entry"])["url"] for d in letters] == ["http://a/poison"]
    assert "delivered 3 times" in letters[0]["reason"]
    (good,) = rclient.lrange(KEYS.queue(4), 0, -1)
    assert good.startswith(b"2|")  # at MAX - 1: its next delivery runs alone


def test_codec_round_trip_and_refuses_what_could_run_code():
    spider = DemoSpider()
    request = Request(
        "http://a/p",
        callback=spider.parse_item,
        priority=3,
        method="POST",
        body=b"\xff\x00binary",
        meta={"k": [1, 2]},
        headers={"X-A": "b"},
    )
    data = encode_request(request, spider)
    assert "GET" not in data and "dont_filter" not in data  # defaults left out
    back = decode_request(data, spider, CLASSES)
    assert (back.url, back.priority, back.method, back.body) == (
        "http://a/p",
        3,
        "POST",
        b"\xff\x00binary",
    )
    assert back.callback == spider.parse_item and back.meta == {"k": [1, 2]}
    assert back.headers[b"X-A"] == b"b"
    with pytest.raises(BadEntry, match="not in CRAWLER_REQUEST_CLASSES"):
        decode_request(json.dumps({"url": "http://a/", "_class": "os.system"}), spider, CLASSES)
    with pytest.raises(BadEntry, match="not a method of spider"):
        decode_request(json.dumps({"url": "http://a/", "callback": "__class__"}), spider, CLASSES)
    with pytest.raises(BadEntry, match="not JSON"):
        decode_request(pickle.dumps({"url": "http://a/"}), spider, CLASSES)


class ErrbackSpider(DemoSpider):
    def errback_here(self, failure):  # pragma: no cover - resolved by name only
        return None


class AliasSpider(DemoSpider):
    alias = DemoSpider.parse_item  # the same function under another name


def test_request_dict_is_scrapys_to_dict():
    """The codec builds plain requests' dicts itself (to_dict looks callbacks
    up with inspect.getmembers); the result is what to_dict gives."""
    spider = ErrbackSpider()
    requests = [
        Request("http://a/"),
        Request("http://a/p", callback=spider.parse_item, errback=spider.errback_here),
        Request(
            "http://a/q",
            callback=spider.parse,
            method="PUT",
            body=b"x",
            headers={"A": ["1", "2"]},
            cookies={"c": "d"},
            meta={"m": 1},
            encoding="latin-1",
            priority=-2,
            dont_filter=True,
            flags=["f"],
            cb_kwargs={"k": 1},
        ),
    ]
    for request in requests:
        assert _request_dict(request, spider) == request.to_dict(spider=spider)
    # A method under two names: to_dict names it "alias" (the first name in
    # order), the codec by its own name; both decode to the same method.
    aliasing = AliasSpider()
    aliased = Request("http://a/alias", callback=aliasing.alias)
    assert aliased.to_dict(spider=aliasing)["callback"] == "alias"
    assert _request_dict(aliased, aliasing)["callback"] == "parse_item"
    back = decode_request(encode_request(aliased, aliasing), aliasing, CLASSES)
    assert back.callback == aliasing.alias == aliasing.parse_item
    # Anything else goes through to_dict itself: the same answer, or error.
    other = Request("http://a/", callback=ErrbackSpider().parse_item)
    assert _request_dict(other, spider) == other.to_dict(spider=spider)
    with pytest.raises(ValueError):
        _request_dict(Request("http://a/", callback=len), spider)


def test_garbage_in_redis_is_dead_lettered_and_the_crawl_goes_on(
    make_site, redis_url, rclient, tmp_path
):
    site = make_site(20)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0

    class Boom:
        def __reduce__(self):
            return (print, ("pickle payload executed",))

    rclient.rpush(
        "{site}:q:0",
        b"not json at all",
        b"0|" + pickle.dumps(Boom()),
        b'0|{"url": "http://a/", "callback": "gone_method"}',
    )
    rclient.zadd("{site}:prios", {"0": 0})
    rclient.lpush("site:start_urls", "ftp://nope/", site.url("/page/1.html"), "{bad json")
    log = tmp_path / "node.log"
    # Finished holding dead letters: CRAWLER_DEAD_LETTER_EXIT_CODE, and said.
    assert start_node("site", redis_url, log).wait(timeout=120) == 3
    text = log.read_text()
    assert "Spider closed (finished)" in text
    assert "Crawl 'site' holds 5 dead letters" in text
    assert "pickle payload executed" not in text
    assert len(site.page_counts()) == 20 and set(site.page_counts().values()) == {1}
    reasons = [json.loads(x)["reason"] for x in rclient.lrange("{site}:dead", 0, -1)]
    assert len(reasons) == 5, reasons
    assert sum("malformed entry: not JSON" in r for r in reasons) == 2
    assert any("'gone_method' is not a method of spider 'site'" in r for r in reasons)
    assert any("bad seed: unsupported scheme 'ftp'" in r for r in reasons)
    assert any("bad seed: bad JSON" in r for r in reasons)
    assert int(rclient.hget("{site}:stats", "leased")) == 0


def test_a_domain_ready_within_a_second_is_leased_ahead_in_send_order(redis_url):
    """With a delay, a lease call also hands out requests whose domain is
    ready within LEASE_AHEAD, each with the time to wait, numbered soonest
    first (a node sends in lease order); Redis times a domain's next request
    from when its last one started, as the node reports it."""
    from crawler.politeness import Policy

    async def scenario() -> None:
        policy = Policy(delay=0.6, concurrency=8, jitter=0.0)
        f = Frontier(aioredis.Redis.from_url(redis_url), KEYS, "n1", policy=policy)
        await f.commit(Batch(pushes=[push("http://a/1", fp=1), push("http://a/2", fp=2)]))
        first = await f.lease(10, 30_000)
        assert urls(first) == ["http://a/1"] and first.waits == {}  # a's next waits for a/1
        assert first.entries[0][2]  # its start must be reported
        # a/1 started 0.2 s before the report reached Redis: a/2 is due
        # 0.4 s from now, plus the send margin (a tenth of the delay: 60 ms),
        # and leased ahead with that wait.
        await f.commit(Batch(starts=[("a", 1.0, time.monotonic() - 0.2, 0)]))
        await f.commit(Batch(pushes=[push("http://b/1", fp=3)]))
        second = await f.lease(10, 30_000)
        assert urls(second) == ["http://b/1", "http://a/2"]  # ready now first
        ids = [int(lease_id) for lease_id, _, _ in second.entries]
        assert ids == sorted(ids)
        a2 = str(ids[1])
        assert list(second.waits) == [a2]
        assert 0.42 <= second.waits[a2] <= 0.47, second.waits  # 0.4 alone: no margin
        # Nothing else of a is handed out before a/2 starts.
        await f.commit(Batch(pushes=[push("http://a/3", fp=4)]))
        assert urls(await f.lease(10, 30_000)) == []
        await f.client.aclose()

    run(scenario())


def test_cluster_stats_keep_the_highest_of_a_max_stat(redis_url, rclient):
    """`scrapy status --stats` adds the nodes' stats up; one Scrapy keeps
    with max_value (request_depth_max, memusage/max) is the highest of the
    nodes', not their sum (3 nodes of depth 3 showed request_depth_max 9)."""
    from crawler.nodereport import NodeReport

    class Stats:  # what NodeReport reads of Scrapy's stats collector
        def __init__(self, values: dict[str, int]) -> None:
            self.values = values

        def get_stats(self) -> dict[str, int]:
            return self.values

    async def go() -> None:
        a = NodeReport(await frontier(redis_url, "a"), Stats({"request_depth_max": 3}), 1000)
        b = NodeReport(await frontier(redis_url, "b"), Stats({"request_depth_max": 2}), 1000)
        a.stats.values["item_scraped_count"] = 5
        b.stats.values["item_scraped_count"] = 4
        await a.push_stats()
        await b.push_stats()
        b.stats.values.update(request_depth_max=4, item_scraped_count=6)
        await b.push_stats()
        await a.push_stats()  # nothing new from a

    run(go())
    stats = rclient.hgetall(KEYS.clusterstats)
    assert stats[b"request_depth_max"] == b"4"
    assert stats[b"item_scraped_count"] == b"11"
