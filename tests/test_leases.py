"""The lease session and cluster completion, each alone against a real Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis
from scrapy import Request
from scrapy.settings import Settings

from crawler.completion import ClusterCompletion
from crawler.config import CrawlConfig
from crawler.frontier import Batch, Frontier, dead_letter
from crawler.leases import LeaseSession
from crawler.pauses import DomainPauses
from crawler.politeness import Policy
from crawler.starts import StartReports
from tests.test_frontier import KEYS, push, urls


class JsonDecoder:
    def decode(self, lease_id: str, body: bytes, batch: Batch) -> Request | None:
        return Request(json.loads(body)["url"])

    def decode_raw(self, lease_id: str, raw: bytes, batch: Batch) -> None:
        raise AssertionError("no raw seeds here")


def config(**settings: object) -> CrawlConfig:
    base = {"CRAWLER_LEASE_TIME": 2, "CRAWLER_LEASE_RENEW_INTERVAL": 0.5, "CRAWLER_PREFETCH": 2}
    return CrawlConfig.from_settings(Settings({**base, **settings}), "t")


def session(redis_url: str, node: str) -> LeaseSession:
    frontier = Frontier(aioredis.Redis.from_url(redis_url), KEYS, node)
    return LeaseSession(frontier, config(), lambda key, n: None)


def test_a_session_hands_out_nothing_once_its_leases_may_have_expired(redis_url):
    async def scenario() -> tuple[list[str], list[str]]:
        frozen, other = session(redis_url, "frozen"), session(redis_url, "other")
        await frozen.frontier.commit(Batch(pushes=[push(f"http://a/{i}") for i in range(4)]))
        assert (await frozen.refill(JsonDecoder(), Batch())) == (False, False)  # not renewed yet
        await frozen.renew("{}", set)
        ready, _ = await frozen.refill(JsonDecoder(), Batch())
        assert ready and len(frozen.ready) == 4
        first = frozen.take()
        assert first is not None and first[1].url == "http://a/0"
        # Frozen past its 2 s lease: the other node reclaims its work.
        frozen.valid_until = time.monotonic() - 1
        assert frozen.take() is None and frozen.renew_due
        await asyncio.sleep(2.1)
        await other.renew("{}", set)
        await other.refill(JsonDecoder(), Batch())
        taken = [r.url for _, r in other.ready]
        # Back: the renewal finds nothing held and drops what was prefetched.
        await frozen.renew("{}", set)
        left = [r.url for _, r in frozen.ready]
        assert frozen.take() is None
        for s in (frozen, other):
            await s.frontier.client.aclose()
        return taken, left

    taken, left = asyncio.run(scenario())
    assert sorted(taken) == ["http://a/0", "http://a/1", "http://a/2", "http://a/3"]
    assert left == []


def test_completion_waits_for_an_empty_quiet_frontier(redis_url):
    async def scenario() -> list[bool]:
        frontier = Frontier(aioredis.Redis.from_url(redis_url), KEYS, "n")
        completion = ClusterCompletion(frontier, finish_grace=0.3)
        await frontier.commit(Batch(pushes=[push("http://a/1")]))
        seen = [await completion.check()]  # one queued: not finished
        leased = await frontier.lease(1, 10_000)
        assert leased is not None
        seen.append(await completion.check())  # held by a node: not finished
        await frontier.commit(Batch(acks=[leased.entries[0][0]]))
        seen.append(await completion.check())  # empty, quiet since now
        await asyncio.sleep(0.35)
        seen.append(await completion.check())  # quiet for the grace: finished
        await frontier.client.aclose()
        return seen

    assert asyncio.run(scenario()) == [False, False, False, True]


def test_a_reclaimed_request_goes_back_first_even_for_a_parked_domain(redis_url, rclient):
    """A busy domain's requests wait in its park list, served before the
    queues; a reclaimed request went to the head of the queue, that is
    behind the whole park list (the soak saw returns wait ~7 minutes)."""
    policy = Policy(delay=0.0, concurrency=1, jitter=0.5)

    async def scenario() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        dead = Frontier(client, KEYS, "dead", policy=policy)
        live = Frontier(client, KEYS, "live", policy=policy)
        await dead.commit(Batch(pushes=[push(f"http://a/{i}", fp=i) for i in range(5)]))
        leased = await dead.lease(5, 100)  # one slot: one leased, the rest parked
        assert leased is not None and len(leased.entries) == 1
        # Parked in the node's inbox: the call had not declared a's park list.
        assert rclient.llen(KEYS.parkin("dead")) == 4
        await asyncio.sleep(0.15)
        assert await live.reclaim_expired(5) == (1, 0)
        order = []
        for _ in range(5):
            got = await live.lease(1, 10_000)
            assert got is not None and len(got.entries) == 1
            lease_id, entry, _ = got.entries[0]
            order.append(json.loads(entry.split(b"|", 2)[2])["url"])
            await live.commit(Batch(acks=[lease_id]))
        await client.aclose()
        return order

    assert asyncio.run(scenario()) == [f"http://a/{i}" for i in range(5)]


def test_ready_requests_pass_one_leased_ahead_within_the_start_window(redis_url):
    """A node holding a request leased ahead (its domain ready in a moment)
    hands out what is ready behind it instead of waiting: a slow polite
    domain does not hold up a fast one on that node. Its start reports never
    go below what Redis has; if it dies, the request it passed counts one
    delivery, and nothing is lost."""
    policy = Policy(delay=0.6, concurrency=8, jitter=0.0)

    async def scenario() -> tuple[list[str], list[int]]:
        client = aioredis.Redis.from_url(redis_url)
        f = Frontier(client, KEYS, "n1", policy=policy)
        counted: Counter[str] = Counter()
        s = LeaseSession(f, config(), lambda key, n: counted.update({key: n}))
        starts = StartReports(8)

        async def report() -> str:
            text, top = starts.report()
            await f.commit(Batch(), began=text)
            starts.applied(top)
            return text

        await s.renew("{}", set)
        await f.commit(Batch(pushes=[push("http://a/1", fp=1), push("http://a/2", fp=2)]))
        await s.refill(JsonDecoder(), Batch())
        got = s.take(starts.fits)
        assert got is not None and got[1].url == "http://a/1"
        starts.handed_out(got[0])
        await f.commit(Batch(starts=[("a", 1.0, time.monotonic(), 0)]))
        await report()
        # a/2 is leased ahead (due in 0.6 s and its margin); b/1 after it.
        await s.refill(JsonDecoder(), Batch())
        await f.commit(Batch(pushes=[push("http://b/1", fp=3)]))
        await asyncio.sleep(0.25)  # the hold after a lease that found less (_DRY_HOLD)
        assert s.wants_more()  # not held back by the one leased ahead
        await s.refill(JsonDecoder(), Batch())
        assert [r.url for _, r in s.ready] == ["http://a/2", "http://b/1"]
        # With CRAWLER_MAX_DELIVERIES=1 the delivery a pass may cost would
        # dead-letter a/2 unsent: nothing passes it.
        s.max_deliveries = 1
        assert s.take(starts.fits) is None
        s.max_deliveries = config().max_deliveries
        got = s.take(starts.fits)
        assert got is not None and got[1].url == "http://b/1"  # passes a/2
        assert counted["crawler/passed"] == 1  # the node's stat says so
        starts.handed_out(got[0])
        assert s.take(starts.fits) is None  # a/2 is not due yet
        b1 = await report()
        assert b1.startswith(got[0] + "|")
        # Fewer free places in the window than held ids to pass: no passing.
        assert not StartReports(1).fits("9", ["8"])
        await asyncio.sleep(0.7)
        got = s.take(starts.fits)
        assert got is not None and got[1].url == "http://a/2"
        assert counted["crawler/passed"] == 1  # a/2 went in its turn
        starts.handed_out(got[0])
        assert starts.report()[0] == ""  # Redis has a higher id already
        # The node dies here: both count as started when reclaimed.
        await asyncio.sleep(2.1)
        # (Without a delay for the node taking them over, so one call may
        # lease them all once the dead node's holds ran out.)
        live = Frontier(client, KEYS, "n2", policy=Policy(delay=0.0, concurrency=8, jitter=0.0))
        assert await live.reclaim_expired(5) == (3, 0)
        urls, deliveries = [], []
        for _ in range(10):
            again = await live.lease(5, 10_000)
            assert again is not None
            for _, entry, _ in again.entries:
                head, _, rest = entry.partition(b"|")
                deliveries.append(int(head or b"0"))
                urls.append(json.loads(rest.split(b"|", 1)[1])["url"])
            if len(urls) == 3:
                break
            await asyncio.sleep(0.3)
        await client.aclose()
        return sorted(urls), deliveries

    urls, deliveries = asyncio.run(scenario())
    assert urls == ["http://a/1", "http://a/2", "http://b/1"]
    assert deliveries == [1, 1, 1], deliveries


def test_a_request_leased_ahead_for_a_paused_domain_waits_here_for_the_pause(redis_url):
    """A domain paused after a 429: Redis leases its request ahead, due when
    the pause ends. The node's own idea of the pause (crawler.pauses, which
    the backoff middleware checks before sending) is timed from when it read
    Redis's clock, and ends a little later on a busy node. The request then
    waits here for it, not goes out to be put back in the frontier
    (``crawler/backoff/held_back``: a round trip, and the end of the line)."""
    pause = 0.6

    async def scenario() -> tuple[float, float, float, bool]:
        client = aioredis.Redis.from_url(redis_url)
        f = Frontier(client, KEYS, "n1", policy=Policy(delay=0.0, concurrency=8, jitter=0.0))
        pauses = DomainPauses()
        s = LeaseSession(f, config(), lambda key, n: None, pauses)
        await s.renew("{}", set)
        await f.commit(Batch(pushes=[push("http://a/1", fp=1)], backoffs=[("a", pause)]))
        began = time.monotonic()
        await s.refill(JsonDecoder(), Batch())
        assert list(s.not_before) == [s.ready[0][0]]  # leased ahead, due at the pause's end
        redis_due = s.not_before[s.ready[0][0]] - began
        await asyncio.sleep(0.1)  # a busy node reads the pause a moment later
        await pauses.refresh_from(f, s.backoff)
        local_due = time.monotonic() + pauses.until["a"] - time.time() - began
        while (got := s.take()) is None:
            assert time.monotonic() - began < 3, "never handed out"
            await asyncio.sleep(0.005)
        assert got[1].url == "http://a/1"
        sent = time.monotonic() - began
        paused = pauses.paused("a")
        await client.aclose()
        return redis_due, local_due, sent, paused

    redis_due, local_due, sent, paused = asyncio.run(scenario())
    assert redis_due < local_due - 0.05  # the node's pause ends later than Redis's
    assert not paused, f"handed out at {sent:.3f}s, paused here until {local_due:.3f}s"
    assert local_due <= sent < local_due + 0.1


def test_a_pause_ends_for_a_node_whose_last_commit_came_before_it(redis_url):
    """A node whose last commit came before another node paused a domain
    learns of the pause from a lease call. Its worker then looks at that old
    commit's result at every tick: it read the pauses again each time (the
    versions differed, 0 and 1), and timed them from the old result's Redis
    clock, so the pause always ended half a second from now. Its leased
    requests of the domain waited for good, their leases renewed, and both
    nodes stood idle (2 nodes, a page answering 503: 3 runs in 40)."""
    pause = 0.4

    async def scenario() -> tuple[float, bool]:
        client = aioredis.Redis.from_url(redis_url)
        f = Frontier(client, KEYS, "n1", policy=Policy(delay=0.0, concurrency=8, jitter=0.0))
        other = Frontier(client, KEYS, "n2")
        pauses = DomainPauses()
        s = LeaseSession(f, config(), lambda key, n: None, pauses)
        await s.renew("{}", set)
        before = await f.commit(Batch(pushes=[push("http://a/1", fp=1)]))
        assert before.backoff_version == 0
        await asyncio.sleep(0.5)  # the node's commit is a while old ...
        await other.commit(Batch(backoffs=[("a", pause)]))  # ... when another pauses a/
        began = time.monotonic()
        while time.monotonic() - began < pause + 0.6:
            # As the worker does: a lease call (_refill), then a flush
            # that waits and refreshes from the last commit's result.
            await s.refill(JsonDecoder(), Batch())
            await pauses.refresh_from(f, s.backoff)
            await pauses.refresh(f, before)
            await asyncio.sleep(0.02)
        left = pauses.ends_in("a")
        got = s.take()
        await client.aclose()
        return left, got is not None

    left, handed_out = asyncio.run(scenario())
    assert left == 0, f"paused {left:.3f}s more, a second after Redis's pause of {pause}s ended"
    assert handed_out


def test_a_burst_of_429s_pauses_once_and_a_fine_page_starts_the_backoff_over(redis_url, rclient):
    """Exponential backoff's level rose with every 429/503 answer within a
    minute of the last pause: 8 requests in flight together answering 503
    made level 7 (a 128x pause, up to CRAWLER_BACKOFF_MAX: 600 s, for a site
    fine again at once), a Retry-After raised it too, and pages answering
    fine between sporadic 503s never brought it down (helper 32: 82 of 120
    pages after 120 s, about 40 minutes to finish; plain Scrapy 1.9 s)."""
    base = 0.3

    def level() -> int | None:
        value = rclient.hget(KEYS.backoffs, "a")
        return None if value is None else int(value.split(b"|")[1])

    async def scenario() -> list[int | None]:
        client = aioredis.Redis.from_url(redis_url)
        policy = Policy(delay=0.0, concurrency=8, jitter=0.0, backoff_base=base)
        f = Frontier(client, KEYS, "n1", policy=policy)
        seen: list[int | None] = []
        await f.commit(Batch(backoffs=[("a", -1.0)] * 8))  # a burst, in flight together
        seen.append(level())
        await f.commit(Batch(backoffs=[("a", -1.0)]))  # one more while paused
        seen.append(level())
        await asyncio.sleep(base + 0.1)
        await f.commit(Batch(backoffs=[("a", -1.0)]))  # after the pause: the next level
        seen.append(level())
        await f.commit(Batch(backoffs=[("a", 1.0)]))  # a Retry-After keeps it
        seen.append(level())
        await f.commit(Batch(backoffs=[("a", -2.0)]))  # fine, but still paused: kept
        seen.append(level())
        await asyncio.sleep(1.1)
        await f.commit(Batch(backoffs=[("a", -2.0)]))  # fine after the pause: over
        seen.append(level())
        await f.commit(Batch(backoffs=[("a", -1.0)]))
        seen.append(level())
        await client.aclose()
        return seen

    assert asyncio.run(scenario()) == [0, 0, 1, 1, 1, None, 0]


def test_a_request_kept_unsent_past_its_domains_hold_goes_back(redis_url, rclient):
    """A domain with a delay is held for its request leased to a node until
    the node reports the start, for a lease's length (lease.lua: the hold is
    not renewed). A node whose downloader
    stays busy longer (slow pages) must not send it after that: another
    node may lease the domain's next request then, and the two would go
    out less than the delay apart. It hands the request back in time for
    a report to get there (1 s before the end of this 2 s hold)."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> tuple[list[tuple[float, str, str]], list[str]]:
        client = aioredis.Redis.from_url(redis_url)
        n1 = LeaseSession(Frontier(client, KEYS, "n1", policy=policy), config(), lambda k, n: None)
        n2 = LeaseSession(Frontier(client, KEYS, "n2", policy=policy), config(), lambda k, n: None)
        await n1.frontier.commit(Batch(pushes=[push("http://b/1", fp=1), push("http://b/2", fp=2)]))
        for s in (n1, n2):
            await s.renew("{}", set)
        began = time.monotonic()
        await n1.refill(JsonDecoder(), Batch())
        assert [r.url for _, r in n1.ready] == ["http://b/1"]
        sent: list[tuple[float, str, str]] = []

        async def send(node: LeaseSession, lease_id: str, request: Request) -> None:
            sent.append((time.monotonic() - began, node.frontier.node, request.url))
            unsent = node.started(lease_id)  # as crawler.download_events does
            assert unsent is not None
            starts = [(unsent[0], 1.0, time.monotonic(), unsent[1])]
            await node.frontier.commit(Batch(starts=starts, acks=[lease_id]))

        # n1's downloader is busy (slow pages) for 2.2 s: it renews its
        # leases, and b/1 waits. n2 is idle and sends what it may.
        while time.monotonic() - began < 6 and len(sent) < 2:
            await asyncio.sleep(0.05)
            await n1.renew("{}", set)
            if n1.frontier.inbox_due(0.5):
                await n1.frontier.drain_inbox(n1.lease_ms)  # b/2, parked (the worker's tick)
            await n1.release_unsent()
            if time.monotonic() - began > 2.2 and (got := n1.take()) is not None:
                await send(n1, *got)
            await n2.refill(JsonDecoder(), Batch())
            if (got := n2.take()) is not None:
                await send(n2, *got)
        held = sorted(v.decode() for v in rclient.hvals("{t}:held:n1"))
        await client.aclose()
        return sent, held

    sent, held = asyncio.run(scenario())
    assert sorted(url for _, _, url in sent) == ["http://b/1", "http://b/2"], sent
    assert [node for _, node, _ in sent] == ["n2", "n2"], sent  # n1 handed b/1 back
    assert sent[1][0] - sent[0][0] >= 1.0, sent  # the delay, between the two
    assert held == []


def test_nothing_is_leased_ahead_against_a_hold(redis_url):
    """A request of a domain with a delay holds the domain until its start is
    reported (for a lease's length): it may start at any moment before, so
    the end of the hold is no time to lease the next one ahead for. Once the
    start is reported, the next is leased ahead for the delay after it."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> float:
        client = aioredis.Redis.from_url(redis_url)
        n1 = Frontier(client, KEYS, "n1", policy=policy)
        n2 = Frontier(client, KEYS, "n2", policy=policy)
        await n1.commit(Batch(pushes=[push("http://b/1", fp=1), push("http://b/2", fp=2)]))
        first = await n1.lease(1, 2000)  # b/1: the domain is held for 2 s
        assert first is not None and urls(first) == ["http://b/1"]
        await n1.lease(0, 2000)  # b/2, parked in n1's inbox, to the park list
        await asyncio.sleep(1.2)  # the hold ends within the lease-ahead second
        during = await n2.lease(1, 2000)
        assert during is not None and during.entries == [], "leased ahead against a hold"
        await n1.commit(Batch(starts=[("b", 1.0, time.monotonic(), 0)]))  # b/1 starts now
        await asyncio.sleep(0.1)  # its delay and send margin, 1.05 s, end within a second
        for _ in range(3):  # (the first moves b/2 from n2's inbox to its park list)
            after = await n2.lease(1, 2000)
            assert after is not None
            if after.entries:
                break
        assert urls(after) == ["http://b/2"]
        await client.aclose()
        return after.waits[after.entries[0][0]]

    wait = asyncio.run(scenario())
    assert 0.85 <= wait <= 0.96  # the delay and its send margin after b/1's start


class BrokenDecoder(JsonDecoder):
    """Dead-letters the entries whose URL says "broken", as a spider's
    decoder does a malformed one (crawler.decoding)."""

    def decode(self, lease_id: str, body: bytes, batch: Batch) -> Request | None:
        if b"broken" in body:
            batch.deads.append((lease_id, dead_letter("malformed entry", body.decode(), "n2")))
            return None
        return super().decode(lease_id, body, batch)


def test_a_request_leased_ahead_that_fails_to_decode_frees_its_domain_when_due(redis_url):
    """A request leased ahead (its domain's delay runs for a moment yet)
    that the node cannot decode is dead-lettered at once; its domain's hold
    is let go only when it was due to go out, not at once: the delay after
    the last request that did start still holds."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> tuple[float, float]:
        client = aioredis.Redis.from_url(redis_url)
        n1 = Frontier(client, KEYS, "n1", policy=policy)
        n2 = LeaseSession(Frontier(client, KEYS, "n2", policy=policy), config(), lambda k, n: None)
        await n2.renew("{}", set)
        pushes = [push("http://b/1", fp=1), push("http://b/broken", fp=2), push("http://b/3", fp=3)]
        await n1.commit(Batch(pushes=pushes))
        assert urls(await n1.lease(1, 10_000)) == ["http://b/1"]
        began = time.monotonic()
        await n1.commit(Batch(starts=[("b", 1.0, began, 0)]))  # b/1 starts now
        await asyncio.sleep(0.2)
        batch = Batch()
        await n2.refill(BrokenDecoder(), batch)  # b/broken, leased ahead, due at 1.05 s
        assert not n2.ready and len(batch.deads) == 1
        # The node's worker commits its batch, and whatever came due since.
        first = None
        while first is None and time.monotonic() - began < 3:
            batch.unblocks += n2.due_unblocks(time.monotonic())
            await n2.frontier.commit(batch)
            if n2.frontier.inbox_due(0.0):
                await n2.frontier.drain_inbox(n2.lease_ms)  # b/3, parked there
            batch = Batch()
            leased = await n1.lease(1, 10_000)
            assert leased is not None
            if leased.entries:
                assert urls(leased) == ["http://b/3"]
                first = time.monotonic() - began + leased.waits.get(leased.entries[0][0], 0.0)
            await asyncio.sleep(0.05)
        await client.aclose()
        assert first is not None
        return first, time.monotonic() - began

    sends_at, _ = asyncio.run(scenario())
    assert sends_at >= 1.0, f"b/3 may go {sends_at:.3f}s after b/1 started, under a 1 s delay"


def test_a_node_that_hands_a_request_back_does_not_take_it_again_at_once(redis_url):
    """A node hands back a request it could not send (its downloader full):
    it does not lease it straight back (it would, at every tick, for as long
    as it stays busy); an idle node gets it, after the delay from then."""
    policy = Policy(delay=0.5, concurrency=8, jitter=0.0)

    async def scenario() -> tuple[float | None, int]:
        client = aioredis.Redis.from_url(redis_url)
        counted: Counter[str] = Counter()
        n1 = LeaseSession(
            Frontier(client, KEYS, "n1", policy=policy),
            config(),
            lambda k, n: counted.update({k: n}),
        )
        n2 = LeaseSession(Frontier(client, KEYS, "n2", policy=policy), config(), lambda k, n: None)
        await n1.frontier.commit(Batch(pushes=[push("http://b/1", fp=1)]))
        for s in (n1, n2):
            await s.renew("{}", set)
        began = time.monotonic()
        await n1.refill(JsonDecoder(), Batch())
        assert [r.url for _, r in n1.ready] == ["http://b/1"]
        got_by_n2 = None
        while time.monotonic() - began < 5 and got_by_n2 is None:
            await asyncio.sleep(0.05)  # n1's tick: it never sends (downloader full)
            await n1.renew("{}", set)
            await n1.release_unsent()
            if n1.wants_more():
                await n1.refill(JsonDecoder(), Batch())
            if int((time.monotonic() - began) / 0.05) % 4 == 0:  # n2 idle: every 0.2 s
                await n2.refill(JsonDecoder(), Batch())
                if n2.take() is not None:
                    got_by_n2 = time.monotonic() - began
        await client.aclose()
        return got_by_n2, counted["crawler/released_unsent"]

    got_by_n2, released = asyncio.run(scenario())
    # Handed back at 1 s (2 s lease), free 0.55 s later, n2's next call.
    assert released == 1
    assert got_by_n2 is not None and 1.5 <= got_by_n2 < 2.0, got_by_n2


@pytest.mark.parametrize("leaving", [False, True])
def test_a_request_handed_back_lets_go_of_its_own_hold(redis_url, leaving):
    """Handing back a request that holds its domain (leased, not started)
    frees the domain after the delay from then, even with another request of
    it in flight: the hold was its own, not the other's. Also when the node
    hands back everything as it leaves (SIGTERM)."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> float:
        client = aioredis.Redis.from_url(redis_url)
        n1 = Frontier(client, KEYS, "n1", policy=policy)
        n2 = Frontier(client, KEYS, "n2", policy=policy)
        n3 = Frontier(client, KEYS, "n3", policy=policy)
        await n1.commit(Batch(pushes=[push(f"http://b/{i}", fp=i) for i in range(3)]))
        b0 = await n2.lease(1, 10_000)
        assert b0 is not None and urls(b0) == ["http://b/0"]
        began = time.monotonic()
        await n2.commit(Batch(starts=[("b", 1.0, began, 0)]))  # b/0 starts, in flight on n2
        await asyncio.sleep(1.1)
        b1 = await n1.lease(1, 10_000)  # b/1 holds b for 10 s
        assert b1 is not None and urls(b1) == ["http://b/1"] and b1.backoff is not None
        lease_id = b1.entries[0][0]
        released = time.monotonic()
        holds = {lease_id: b1.backoff[1] + 10_000}
        if leaving:
            await n1.release_all(holds)
        else:
            await n1.release([lease_id], holds)
        while time.monotonic() - released < 12:
            leased = await n3.lease(1, 10_000)
            if leased is not None and leased.entries:
                break
            await asyncio.sleep(0.1)
        await client.aclose()
        return time.monotonic() - released

    freed_after = asyncio.run(scenario())
    assert 1.0 <= freed_after < 2.0, f"b was held {freed_after:.2f}s after b/1 went back"


async def next_lease(node: Frontier, lease_ms: int) -> tuple[list[str], float]:
    """The next request *node* leases within 3 s, and when (monotonic) it is
    due to go out (leased ahead: after its wait)."""
    began = time.monotonic()
    while time.monotonic() - began < 3:
        leased = await node.lease(1, lease_ms)
        if leased is not None and leased.entries:
            return urls(leased), time.monotonic() + leased.waits.get(leased.entries[0][0], 0)
        await asyncio.sleep(0.05)
    return [], 0.0


def test_a_late_start_keeps_another_requests_hold(redis_url):
    """b/1 went out after its hold ran out (it waited in its node's
    downloader, CONCURRENT_REQUESTS_PER_IP) and b/2 was leased to another
    node meanwhile. b/1's start report must not lift b/2's hold: b/3 would
    be leased to go one delay after b/1 while b/2 may still start. Before,
    b/3 was leased at once (due 1 s later) with b/2 unstarted."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> tuple[list[str], list[str], float]:
        client = aioredis.Redis.from_url(redis_url)
        n1, n2, n3 = (Frontier(client, KEYS, n, policy=policy) for n in ("n1", "n2", "n3"))
        await n1.commit(Batch(pushes=[push(f"http://b/{i}", fp=i) for i in (1, 2, 3)]))
        first = await n1.lease(1, 2000)  # b/1 holds b for 2 s
        assert urls(first) == ["http://b/1"] and first.backoff is not None
        hold1 = first.backoff[1] + 2000
        await asyncio.sleep(2.2)
        second = await n2.lease(1, 2000)  # b/1's hold ran out: b/2 holds b now
        assert urls(second) == ["http://b/2"] and second.backoff is not None
        hold2 = second.backoff[1] + 2000
        await n1.commit(Batch(starts=[("b", 1.0, time.monotonic(), hold1)]))  # b/1, late
        while_held: list[str] = []
        for _ in range(6):  # 0.3 s: within the lease-ahead second of b/1's delay
            while_held += urls(await n3.lease(1, 2000))
            await asyncio.sleep(0.05)
        began = time.monotonic()
        await n2.commit(Batch(starts=[("b", 1.0, began, hold2)]))  # b/2 starts
        third, due = await next_lease(n3, 2000)
        await client.aclose()
        return while_held, third, due - began

    while_held, third, after = asyncio.run(scenario())
    assert while_held == [], "b/3 was leased while b/2 held b, unstarted"
    assert third == ["http://b/3"] and after >= 1.0, (third, after)


def test_an_earlier_start_reported_later_does_not_move_the_next_request_earlier(redis_url):
    """Two starts of b reach Redis out of order (b/2's, sent 1.1 s after
    b/1, first): the next request goes one delay after b/2, the later.
    Before, b/1's report set it one delay after b/1, in the past."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> float:
        client = aioredis.Redis.from_url(redis_url)
        n1, n2 = (
            Frontier(client, KEYS, "n1", policy=policy),
            Frontier(client, KEYS, "n2", policy=policy),
        )
        await n1.commit(Batch(pushes=[push(f"http://b/{i}", fp=i) for i in (1, 2, 3)]))
        first = await n1.lease(1, 1000)
        assert urls(first) == ["http://b/1"] and first.backoff is not None
        hold1 = first.backoff[1] + 1000
        sent1 = time.monotonic()
        await asyncio.sleep(1.1)  # b/1 goes out at once; its report is late
        second = await n2.lease(1, 1000)
        assert urls(second) == ["http://b/2"] and second.backoff is not None
        hold2 = second.backoff[1] + 1000
        began2 = time.monotonic()
        await n2.commit(Batch(starts=[("b", 1.0, began2, hold2)]))
        await n1.commit(Batch(starts=[("b", 1.0, sent1, hold1)]))
        third, due = await next_lease(n1, 1000)
        await client.aclose()
        assert third == ["http://b/3"]
        return due - began2

    after = asyncio.run(scenario())
    assert after >= 1.0, after


def test_a_late_unblock_keeps_another_requests_hold(redis_url):
    """b/1 finished unsent (robots.txt, a filter) after its hold ran out, and
    b/2 was leased to another node meanwhile. Freeing b for b/1 must not
    lift b/2's hold. Before, b/3 was leased at once with b/2 unstarted."""
    policy = Policy(delay=1.0, concurrency=8, jitter=0.0)

    async def scenario() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        n1, n2, n3 = (Frontier(client, KEYS, n, policy=policy) for n in ("n1", "n2", "n3"))
        await n1.commit(Batch(pushes=[push(f"http://b/{i}", fp=i) for i in (1, 2, 3)]))
        first = await n1.lease(1, 2000)
        assert urls(first) == ["http://b/1"] and first.backoff is not None
        hold1 = first.backoff[1] + 2000
        await asyncio.sleep(2.2)
        assert urls(await n2.lease(1, 2000)) == ["http://b/2"]  # holds b now
        await n1.commit(Batch(acks=[first.entries[0][0]], unblocks=[("b", hold1)]))
        while_held: list[str] = []
        for _ in range(6):
            while_held += urls(await n3.lease(1, 2000))
            await asyncio.sleep(0.05)
        await client.aclose()
        return while_held

    assert asyncio.run(scenario()) == [], "b/3 was leased while b/2 held b, unstarted"
