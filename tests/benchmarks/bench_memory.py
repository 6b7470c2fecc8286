"""Redis memory: bytes per seen URL and per queued request, ours and scrapy-redis's.

Each measurement runs on its own fresh redis-server and sums ``MEMORY USAGE
key SAMPLES 0`` (exact, every element counted) over the keys that hold the
structure, so unrelated keys and the server's baseline are not counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from scrapy import Request
from scrapy.settings import Settings
from scrapy.utils.request import fingerprint

from tests.benchmarks.bench_util import ROOT, RedisServer, progress

_BATCH = 2000  # fingerprints per commit
_IN_FLIGHT = 4  # commits in flight at once
_DROP_QUEUE_EVERY = 50  # commits between deletions of the (unmeasured) queue
# The exact seen-set's documented sizing: about one shard per 400 URLs keeps
# every shard under Redis's set-max-intset-entries (512), in the 8-byte
# intset encoding. The default shard count is used unless the run is so
# small that its shards would hold fewer than _MIN_PER_SHARD URLs each
# (then key overhead, not URLs, would be measured).
_URLS_PER_SHARD = 400
_MIN_PER_SHARD = 100


class _HiredisPackConnection(aioredis.Connection):
    """redis-py's asyncio connection packs commands in pure Python; the sync
    client uses hiredis. (It mattered more when each push was six arguments;
    a commit now carries its pushes as one JSON argument.) The
    harness packs with hiredis too: the same bytes reach Redis, only faster,
    so the 10M insertions take minutes less. The timed commands (seed,
    export, crawls) run as their own processes and are not affected."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=300, connection_class=_HiredisPackConnection)


def memory_usage(client: redis.Redis, names: list[str]) -> int:
    total = 0
    for start in range(0, len(names), 1000):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + 1000]:
            pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
        total += sum(int(x or 0) for x in pipe.execute())
    return total


def fp20(i: int) -> bytes:
    return hashlib.sha1(str(i).encode()).digest()


@dataclass
class SeenResult:
    mode: str
    count: int
    bytes_total: int
    seconds: float
    probe: int = 0
    probe_duplicates: int = 0
    detail: str = ""

    @property
    def per_url(self) -> float:
        return self.bytes_total / self.count

    @property
    def fp_rate(self) -> float | None:
        return self.probe_duplicates / self.probe if self.probe else None


async def _insert(frontier: Any, keys: Any, start: int, stop: int) -> tuple[int, int]:
    """Commit fingerprints start..stop-1; (queued, duplicates)."""
    from crawler.frontier import Batch

    pending: list[asyncio.Task[Any]] = []
    queued = dups = commits = 0
    client = frontier.client

    async def settle(task: asyncio.Task[Any]) -> None:
        nonlocal queued, dups
        result = await task
        queued += result.queued
        dups += result.duplicates

    for lo in range(start, stop, _BATCH):
        batch = Batch()
        batch.pushes.extend((fp20(i), 0, "0|d|{}") for i in range(lo, min(lo + _BATCH, stop)))
        pending.append(asyncio.create_task(frontier.commit(batch)))
        if len(pending) >= _IN_FLIGHT:
            await settle(pending.pop(0))
        commits += 1
        if commits % _DROP_QUEUE_EVERY == 0:
            # Each new fingerprint also queues an entry; only the seen-set is
            # measured, so the queue is dropped as it grows.
            await client.delete(keys.queue(0))
    for task in pending:
        await settle(task)
    await client.delete(keys.queue(0))
    return queued, dups


async def _seen_bytes(url: str, mode: str, count: int, probe: int) -> SeenResult:
    from crawler.config import CrawlConfig
    from crawler.frontier import Frontier

    values: dict[str, Any] = {"CRAWLER_SEEN_MODE": mode}
    sized = ""
    if mode == "exact":
        shards = CrawlConfig.from_settings(Settings(), "x").seen.shards
        if count < shards * _MIN_PER_SHARD:
            shards = max(1, math.ceil(count / _URLS_PER_SHARD))
            values["CRAWLER_SEEN_SHARDS"] = shards
            sized = ", sized for this run: 1 per 400 URLs"
        else:
            sized = ", the default"
    else:
        values["CRAWLER_BLOOM_CAPACITY"] = count
        values["CRAWLER_BLOOM_ERROR_RATE"] = 0.0001
    cfg = CrawlConfig.from_settings(Settings(values), f"bench-{mode}")
    client = _client(url)
    try:
        frontier = Frontier(client, cfg.keys, "bench-node", cfg.seen)
        t0 = time.monotonic()
        queued, dups = await _insert(frontier, cfg.keys, 0, count)
        seconds = time.monotonic() - t0
        names = await frontier.seen_key_names()
        total = memory_usage(redis.Redis.from_url(url), names)
        detail = f"{len(names):,} keys"
        if mode == "exact":
            detail += f" ({shards:,} shards{sized})"
            if queued != count or dups:
                detail += f"; WARNING: {dups:,} of {count:,} distinct fingerprints taken for seen"
        else:
            detail += f"; {dups:,} of {count:,} taken for seen while filling"
        result = SeenResult(mode, count, total, seconds, detail=detail)
        if probe:
            _, result.probe_duplicates = await _insert(frontier, cfg.keys, count, count + probe)
            result.probe = probe
        return result
    finally:
        await client.aclose()


def seen_bytes(work: Path, mode: str, count: int, probe: int) -> SeenResult:
    """Insert *count* distinct fingerprints into a fresh Redis through the
    frontier's commit; then *probe* new ones, counting false duplicates."""
    server = RedisServer(work / f"redis-seen-{mode}").start()
    try:
        progress(f"seen-set ({mode}): committing {count:,} fingerprints, {_BATCH} per commit")
        result = asyncio.run(_seen_bytes(server.url, mode, count, probe))
        fp = f", {result.probe_duplicates} of {result.probe:,} new ones taken for seen"
        progress(
            f"  {result.per_url:.2f} bytes/URL ({result.detail}), "
            f"{count / result.seconds:,.0f} fingerprints/s{fp if probe else ''}"
        )
        return result
    finally:
        server.stop()


def _site_requests(spider: Any, count: int) -> Any:
    """Requests as the site spider queues them mid-crawl: the parse callback,
    a depth in meta (DepthMiddleware) and a Referer header (RefererMiddleware)."""
    for i in range(count):
        yield Request(
            f"http://127.0.0.1:8080/page/{i}.html",
            callback=spider.parse,
            meta={"depth": 7},
            headers={"Referer": f"http://127.0.0.1:8080/page/{max(0, (i - 1) // 3)}.html"},
        )


def _spider() -> Any:
    from spiders.site import SiteSpider

    return SiteSpider()


@dataclass
class QueueResult:
    ours: float  # bytes per queued request, this project
    scrapy_redis: float  # bytes per queued request, scrapy-redis PriorityQueue (pickle)
    ours_entry: int  # length of one entry in our queue
    scrapy_redis_entry: int  # length of one pickled request


def queue_bytes(work: Path, count: int) -> QueueResult:
    """Queue *count* identical requests with each framework; bytes per entry."""
    from scrapy_redis.queue import PriorityQueue

    from crawler.codec import encode_request
    from crawler.config import CrawlConfig
    from crawler.frontier import Batch, Frontier
    from crawler.politeness import make_entry, slot_of

    spider = _spider()
    server = RedisServer(work / "redis-queue").start()
    try:
        progress(f"queue: {count:,} requests into this project's frontier and scrapy-redis's")
        cfg = CrawlConfig.from_settings(Settings({}), "bench-queue")

        async def ours() -> int:
            client = _client(server.url)
            frontier = Frontier(client, cfg.keys, "bench-node", cfg.seen)
            batch, length = Batch(), 0
            for request in _site_requests(spider, count):
                entry = make_entry(slot_of(request), encode_request(request, spider))
                length = len(entry.encode())
                batch.pushes.append((fingerprint(request), request.priority, entry))
                if len(batch.pushes) >= _BATCH:
                    await frontier.commit(batch)
                    batch = Batch()
            await frontier.commit(batch)
            await client.aclose()
            return length

        ours_entry = asyncio.run(ours())
        client = server.client()
        queued = client.llen(cfg.keys.queue(0))
        ours_bytes = memory_usage(client, [cfg.keys.queue(0)]) / queued

        pipe = client.pipeline(transaction=False)
        queue = PriorityQueue(server=pipe, spider=spider, key="site:requests")
        sr_entry = 0
        for n, request in enumerate(_site_requests(spider, count), 1):
            queue.push(request)
            if n % 5000 == 0:
                pipe.execute()
        pipe.execute()
        sr_entry = len(queue._encode_request(request))
        zcard = client.zcard("site:requests")
        sr_bytes = memory_usage(client, ["site:requests"]) / zcard
        if queued != count or zcard != count:
            progress(f"  WARNING: queued {queued:,} (ours) and {zcard:,} (scrapy-redis)")
        progress(
            f"  {ours_bytes:.0f} bytes/request (entry {ours_entry} B) vs scrapy-redis "
            f"{sr_bytes:.0f} bytes/request (pickle {sr_entry} B)"
        )
        return QueueResult(ours_bytes, sr_bytes, ours_entry, sr_entry)
    finally:
        server.stop()


def scrapy_redis_dupefilter_bytes(work: Path, count: int) -> float:
    """scrapy-redis's RFPDupeFilter (one set of 40-character hex
    fingerprints): bytes per URL after *count* distinct URLs."""
    from scrapy_redis.dupefilter import RFPDupeFilter

    server = RedisServer(work / "redis-dupefilter").start()
    try:
        progress(f"scrapy-redis dupefilter: {count:,} URLs")
        client = server.client()
        pipe = client.pipeline(transaction=False)
        dupefilter = RFPDupeFilter(pipe, key="site:dupefilter")
        for i in range(count):
            dupefilter.request_seen(Request(f"http://127.0.0.1:8080/page/{i}.html"))
            if i % 10000 == 9999:
                pipe.execute()
        pipe.execute()
        stored = client.scard("site:dupefilter")
        per_url = memory_usage(client, ["site:dupefilter"]) / stored
        progress(f"  {per_url:.1f} bytes/URL ({stored:,} fingerprints)")
        return per_url
    finally:
        server.stop()


def start_child(work: Path, mode: str, count: int, probe: int) -> subprocess.Popen[str]:
    """``seen_bytes`` in a child process (see ``child_result``)."""
    cmd = [sys.executable, "-m", "tests.benchmarks.bench_memory", mode, str(count), str(probe)]
    return subprocess.Popen([*cmd, str(work)], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen[str]) -> SeenResult:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the child process exited with status {proc.returncode}")
    return SeenResult(**json.loads(out))


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(1)  # unwinds, so the redis-server is stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    mode, count, probe, work = sys.argv[1:]
    result = seen_bytes(Path(work), mode, int(count), int(probe))
    print(json.dumps(asdict(result)))
