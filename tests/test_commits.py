"""The commit pipeline against a real Redis: one entry Redis refuses is set
aside with its reason and everything else commits; transient errors are
raised for the worker's backoff with nothing lost."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
import redis
import redis.asyncio as aioredis

from crawler.commits import CommitPipeline
from crawler.fingerprints import SeenConfig
from crawler.frontier import Batch, Frontier
from crawler.redis_errors import is_transient
from tests.test_frontier import KEYS, push


def pipeline(redis_url: str, stats: Counter[str], batch_size: int = 200) -> CommitPipeline:
    frontier = Frontier(aioredis.Redis.from_url(redis_url), KEYS, "n1")
    return CommitPipeline(frontier, batch_size, lambda k, n: stats.update({k: n}))


def letters(rclient) -> list[dict]:
    return [json.loads(raw) for raw in rclient.lrange(KEYS.dead, 0, -1)]


@pytest.mark.parametrize("batch_size", [200, 3])
def test_one_unstorable_request_and_item_are_set_aside(redis_url, rclient, batch_size):
    """A lone surrogate cannot be sent to Redis as UTF-8: redis-py raises
    UnicodeEncodeError. Before, the worker retried that batch forever."""
    stats: Counter[str] = Counter()
    good = [push(f"http://a/{i}", fp=i) for i in range(10)]
    fp, prio, entry = push("http://a/bad", fp=99)
    bad = (fp, prio, entry.replace("bad", "bad\ud83d"))
    items = [(b"i%011d" % i, json.dumps({"n": i})) for i in range(5)]
    bad_item = (b"ibad00000000", '{"name": "cut emoji \ud83d"}')
    rclient.hset(KEYS.held("n1"), mapping={"7": "0|a|{}", "8": "0|a|{}"})

    async def scenario() -> None:
        commits = pipeline(redis_url, stats, batch_size)
        commits.batch = Batch(
            pushes=[*good[:4], bad, *good[4:]],
            items=[*items[:2], bad_item, *items[2:]],
            acks=["7", "8"],
        )
        await commits.flush()
        assert len(commits) == 0
        await commits.frontier.client.aclose()

    asyncio.run(scenario())
    assert stats["crawler/queued"] == 10
    assert stats["crawler/items_stored"] == 5
    assert stats["crawler/acked"] == 2
    assert stats["crawler/unstorable_requests"] == 1
    assert stats["crawler/unstorable_items"] == 1
    assert rclient.hlen(KEYS.items) == 5
    assert rclient.hlen(KEYS.held("n1")) == 0
    dead = letters(rclient)
    assert len(dead) == 2
    reasons = sorted(d["reason"] for d in dead)
    assert reasons[0].startswith("cannot store item: UnicodeEncodeError")
    assert reasons[1].startswith("cannot store request: UnicodeEncodeError")
    item_letter = next(d for d in dead if d.get("kind") == "item")
    assert item_letter["item"] == bad_item[1]  # kept, escaped, for the record
    assert int(rclient.hget(KEYS.stats, "dead")) == 2


def test_a_key_of_the_wrong_type_sets_items_aside_and_acks_still_go(redis_url, rclient):
    """Someone overwrote the item store with a string: every item is refused
    (WRONGTYPE), each is set aside with the reason, requests still queue and
    acks still go, so the crawl can finish and says what it lost."""
    stats: Counter[str] = Counter()
    rclient.set(KEYS.items, "oops")
    rclient.hset(KEYS.held("n1"), "5", "0|a|{}")

    async def scenario() -> None:
        commits = pipeline(redis_url, stats)
        commits.batch = Batch(
            pushes=[push("http://a/1", fp=1)],
            items=[(b"i00000000001", "{}"), (b"i00000000002", "{}")],
            acks=["5"],
        )
        await commits.flush()
        await commits.frontier.client.aclose()

    asyncio.run(scenario())
    # The script that failed had pushed the request before the item write
    # (Lua scripts are not rolled back): it is queued once all the same.
    assert rclient.llen(KEYS.queue(0)) == 1
    assert stats["crawler/unstorable_items"] == 2
    assert stats["crawler/acked"] == 1
    dead = letters(rclient)
    assert len(dead) == 2
    assert all(d["reason"].startswith("cannot store item: ResponseError:") for d in dead)
    assert all("WRONGTYPE" in d["reason"] for d in dead)


def test_transient_error_keeps_every_write(redis_server, redis_url, rclient):
    """Redis going away is not the entry's fault: the flush raises a
    transient error and keeps the whole batch for the next try."""
    stats: Counter[str] = Counter()

    async def scenario() -> None:
        commits = pipeline(f"redis://127.0.0.1:{redis_server.port + 1}/0", stats)
        commits.batch = Batch(pushes=[push("http://a/1", fp=1)], acks=["1"])
        with pytest.raises(Exception) as info:
            await commits.flush()
        assert is_transient(info.value)
        [(_, kept)] = commits.pending
        assert len(kept.pushes) == 1 and kept.acks == ["1"] and len(kept) == 2

    asyncio.run(scenario())
    assert not stats


class CuttingProxy:
    """A TCP proxy to Redis that, once armed, forwards the next script call
    and then cuts the connection before Redis's reply reaches the client:
    the commit ran, but the node never hears so."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.armed = False
        self.cuts = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def down() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        pump = asyncio.create_task(down())
        try:
            while data := await reader.read(65536):
                cut = self.armed and b"EVALSHA" in data
                if cut:
                    pump.cancel()  # Redis's reply will not come back
                up_writer.write(data)
                await up_writer.drain()
                if cut:
                    self.armed = False
                    self.cuts += 1
                    await asyncio.sleep(0.2)  # let Redis run it
                    break
        finally:
            pump.cancel()
            writer.close()
            up_writer.close()


def test_a_commit_whose_reply_is_lost_is_applied_once(redis_server, redis_url, rclient):
    """Before, the commit was sent again and applied twice: a dont_filter
    request (a retry) queued twice, a dead letter written twice."""
    stats: Counter[str] = Counter()
    rclient.hset(KEYS.held("n1"), "3", "0|a|{}")

    async def scenario() -> int:
        proxy = CuttingProxy(redis_server.port)
        port = await proxy.start()
        commits = pipeline(f"redis://127.0.0.1:{port}/0", stats)
        await commits.frontier.commit(Batch())  # loads the script first
        _, prio, entry = push("http://a/retry")
        commits.batch = Batch(
            pushes=[(None, prio, entry), push("http://a/other", fp=7)],
            items=[(b"i00000000001", '{"n": 1}'), (b"i00000000002", '{"n": 2}')],
            acks=["3"],
        )
        commits.batch.deads.append(("", '{"reason": "x", "entry": ""}'))
        proxy.armed = True
        for _ in range(5):
            try:
                await commits.flush()
                break
            except Exception as exc:
                assert is_transient(exc), exc
        assert len(commits) == 0
        await commits.frontier.client.aclose()
        proxy.server.close()
        return proxy.cuts

    assert asyncio.run(scenario()) == 1
    assert rclient.llen(KEYS.queue(0)) == 2
    assert rclient.llen(KEYS.dead) == 1
    assert stats["crawler/commits_replayed"] == 1
    assert int(rclient.hget(KEYS.stats, "queued")) == 2
    # The node's own counts of the commit are those of its one application,
    # which it heard of only through the replay. Before, a replay counted
    # zero of each: the node's stats and its final report undercounted.
    for stat, n in [
        ("crawler/queued", 2),
        ("scheduler/enqueued", 2),
        ("scheduler/enqueued/redis", 2),
        ("crawler/items_stored", 2),
        ("crawler/acked", 1),
    ]:
        assert stats[stat] == n, stat


def test_a_replay_reports_what_its_commit_did_with_duplicates(redis_url, rclient):
    """A commit sent again with its number (its reply lost) reports the
    counts of its application: queued, duplicates, items new and already
    stored, acks; an older number, long applied, reports none."""
    rclient.hset(KEYS.held("n1"), mapping={"3": "0|a|{}", "4": "0|a|{}"})

    async def scenario() -> None:
        frontier = Frontier(aioredis.Redis.from_url(redis_url), KEYS, "n1")
        await frontier.commit(
            Batch(pushes=[push("http://a/0", fp=0)], items=[(b"i00000000000", "{}")])
        )
        batch = Batch(
            pushes=[push(f"http://a/{n}", fp=n) for n in range(3)],
            items=[(b"i00000000000", "{}"), (b"i00000000001", "{}")],
            acks=["3", "4"],
        )
        first = await frontier.commit(batch, seq=1)
        again = await frontier.commit(batch, seq=1)
        counts = (first.queued, first.duplicates, first.items_new, first.items_dup, first.acked)
        assert counts == (2, 1, 1, 1, 2) and not first.replayed
        assert again.replayed == 1
        assert (again.queued, again.duplicates, again.items_new, again.items_dup) == counts[:4]
        assert again.acked == 2
        await frontier.commit(Batch(), seq=2)
        old = await frontier.commit(batch, seq=1)
        assert old.replayed == 1 and (old.queued, old.items_new, old.acked) == (0, 0, 0)
        await frontier.client.aclose()

    asyncio.run(scenario())
    assert rclient.llen(KEYS.queue(0)) == 3  # applied once
    assert int(rclient.hget(KEYS.stats, "done")) == 2
    assert int(rclient.hget(KEYS.stats, "items")) == 2


def bloom_frontier(redis_url: str) -> Frontier:
    seen = SeenConfig("bloom", 16, bloom_capacity=100, bloom_error_rate=0.001)
    return Frontier(aioredis.Redis.from_url(redis_url), KEYS, "n1", seen)


def test_bloom_growth_allocates_in_its_own_call(redis_url, rclient):
    """A Bloom layer (up to 512 MB) is no longer allocated inside the commit
    script: commit.lua asks for it, bloom_grow.lua makes it, the commit is
    sent again and takes the layer into service."""

    async def scenario() -> None:
        frontier = bloom_frontier(redis_url)
        await frontier.commit(Batch(pushes=[push(f"http://a/{i}", fp=i) for i in range(150)]))
        await frontier.client.aclose()

    asyncio.run(scenario())
    assert rclient.hget(KEYS.bloom, "layers") == b"2"
    for layer in (1, 2):
        bits = int(rclient.hget(KEYS.bloom, f"m{layer}"))
        assert rclient.strlen(KEYS.bloom_layer(layer)) == (bits + 7) // 8
    assert rclient.llen(KEYS.queue(0)) == 150


def test_a_layer_that_cannot_be_made_leaves_nothing_half_done(redis_url, rclient):
    """Before, a failure after some SETBITs left URLs marked seen but never
    queued. Now the layer is checked before anything is written."""
    rclient.rpush(KEYS.bloom_layer(2), "not a layer")  # the allocation will fail

    async def scenario() -> None:
        frontier = bloom_frontier(redis_url)
        await frontier.commit(Batch(pushes=[push(f"http://a/{i}", fp=i) for i in range(90)]))
        with pytest.raises(Exception, match="WRONGTYPE"):
            batch = Batch(pushes=[push(f"http://b/{i}", fp=1000 + i) for i in range(60)])
            await frontier.commit(batch)
        await frontier.client.aclose()

    asyncio.run(scenario())
    assert rclient.hget(KEYS.bloom, "n1") == b"90"  # not one of the 60 marked seen
    assert rclient.llen(KEYS.queue(0)) == 90


def test_a_connection_lost_while_isolating_loses_nothing(redis_url, rclient):
    """A bad write is being isolated (the chunk split in halves, each piece
    numbered afresh) when the connection drops. Before, the whole chunk was
    sent again with its first number, taken for a replay of the piece that
    had gone through, and the rest (the ack, the set-aside item) was lost."""
    stats: Counter[str] = Counter()
    good = [push(f"http://a/{i}", fp=i) for i in range(6)]
    rclient.set(KEYS.items, "not a hash")  # the item is refused inside Redis
    rclient.hset(KEYS.held("n1"), "7", "0|a|{}")

    async def scenario() -> None:
        commits = pipeline(redis_url, stats)
        real = commits.frontier.commit
        state = {"refused": False, "through": False, "cut": False}

        async def flaky(*args, **kwargs):
            # The connection drops once, right after a piece went through.
            if state["through"] and not state["cut"]:
                state["cut"] = True
                raise redis.ConnectionError("connection lost")
            try:
                result = await real(*args, **kwargs)
            except redis.ResponseError:
                state["refused"] = True
                raise
            state["through"] = state["refused"]
            return result

        commits.frontier.commit = flaky  # type: ignore[method-assign]
        commits.batch = Batch(pushes=good, items=[(b"i00000000001", "{}")], acks=["7"])
        with pytest.raises(redis.ConnectionError):
            await commits.flush()
        await commits.flush()
        assert len(commits.pending) == 0
        await commits.frontier.client.aclose()

    asyncio.run(scenario())
    assert rclient.llen(KEYS.queue(0)) == 6
    assert rclient.hlen(KEYS.held("n1")) == 0
    assert rclient.llen(KEYS.dead) == 1
