"""Redis-side load test (issue 13): N simulated crawl nodes at full speed.

Crawl nodes on a 2-core machine cannot saturate Redis, so this replays what
nodes ask of Redis without Scrapy: each simulated node is an asyncio task
with its own node id and connection, driving the framework's own classes
(``LeaseSession`` leases, renews, reconciles and reclaims; ``CommitPipeline``
commits in ``CRAWLER_BATCH_SIZE`` chunks with sequence numbers and start
reports; ``LocalSeen`` filters links the node already sent) and so the real
Lua scripts. Fetching is instant: a leased page "yields" one item and five
links over a synthetic site of ``DOMAINS`` domains (see ``links``). Nodes
are spread over OS processes (``--procs``); on 2 cores the Python clients
still bound pages/s, so the figure to read is Redis CPU per page, which
does not depend on how fast the clients are.

Per node count it reports Redis CPU per page (``INFO`` used_cpu_user +
used_cpu_sys of the server over a window, divided by the pages Redis
acknowledged meanwhile: the ``done`` counter), pages/s, Redis's CPU load,
round trips and commands per page. ``--profile`` also logs every command
meanwhile (``SLOWLOG`` at threshold 0, which costs Redis CPU of its own)
and splits the time executing commands by script (``EVALSHA`` SHA) and by
the commands each script calls. ``--memory`` measures bytes per queued
request instead, by part and encoding. Findings: ``COSTS.md``.

    .venv/bin/python -m tests.benchmarks.bench_redis_load
    .venv/bin/python -m tests.benchmarks.bench_redis_load --nodes 2,10 --per-tick 1 --profile

``--lua-dir DIR`` loads the scripts from DIR instead of ``crawler/lua``
(variants with the same interface, to measure a change); ``--config
NAME=VALUE`` sets a server option; ``--url`` runs against a Redis already
running.

A crawl split into partitions (``--partitions P``, ``LoadShape.partitions``):
each node is built as the scheduler builds one (the project's
``async_client``, redis-py's cluster client on a cluster; the tags recorded
with the crawl; ``make_frontier``), and ``INFO`` is read from every master
and summed, the pages from every partition's stats. ``--cluster N`` starts a
single Redis and an N-master Redis Cluster side by side and compares them
(``bench_cluster_load``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from tests.benchmarks.bench_util import ROOT, RedisServer, progress

NODE_COUNTS = (2, 5, 10, 25, 50, 100)
DOMAINS = 10_000
SEED_PAGES = 30_000
# A real node at 100 pages/s heartbeats every 10 s (CRAWLER_LEASE_RENEW_INTERVAL):
# simulated nodes heartbeat every this many pages (and at least every 10 s).
BEAT_PAGES = 1_000


@dataclass(frozen=True)
class LoadShape:
    nodes: int
    per_tick: int = 16  # pages a node finishes between two ticks (commit, lease)
    concurrency: int = 16  # CONCURRENT_REQUESTS (CRAWLER_PREFETCH defaults to it)
    warmup: float = 3.0
    seconds: float = 8.0
    procs: int = 2
    crawl: str = "load"
    lua_dir: str = ""
    domains: int = DOMAINS
    per_domain: int = 8  # CONCURRENT_REQUESTS_PER_DOMAIN (cluster-wide here)
    # CRAWLER_PARTITIONS; above 1 the nodes are built as the scheduler builds
    # them (cluster-aware client, recorded tags, make_frontier).
    partitions: int = 1
    # Pages/s each node keeps to (0: as fast as it can), for measuring a Redis
    # at a given load (bench_cluster_load: one Redis at its shards' load).
    rate: float = 0.0


@dataclass
class LoadResult:
    shape: LoadShape
    pages: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    roundtrips: int = 0
    commands: int = 0
    # Executing commands and scripts (commandstats: wall time, so above cpu_s
    # when the machine is oversubscribed and Redis is preempted mid-script).
    executing_s: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    shard_cpu: list[float] = field(default_factory=list)  # CPU s of each master
    part_pages: list[int] = field(default_factory=list)  # pages acked by each partition
    queue_bytes: float = 0.0  # bytes per queued request after the seed (if measured)
    # Times each server's main thread went to sleep waiting for a command
    # (voluntary context switches, from /proc; empty if not readable): each
    # wake costs CPU of its own, which a saturated server does not pay.
    wakes: list[int] = field(default_factory=list)

    @property
    def wakes_per_page(self) -> float:
        return sum(self.wakes) / max(self.pages, 1)

    @property
    def us_per_page(self) -> float:
        return self.cpu_s * 1e6 / max(self.pages, 1)

    @property
    def busiest_us_per_page(self) -> float:
        """CPU per page of the busiest shard (of the one Redis: the same)."""
        return max(self.shard_cpu or [self.cpu_s]) * 1e6 / max(self.pages, 1)

    @property
    def capacity(self) -> float:
        """Pages/s with one core per shard: a shard is single-threaded, so it
        saturates at 1 / its CPU per page, and the busiest one first."""
        return 1e6 / max(self.busiest_us_per_page, 1e-9)

    @property
    def rate(self) -> float:
        return self.pages / max(self.wall_s, 1e-9)


# -- the synthetic site -------------------------------------------------------


_site = {"domains": DOMAINS}


def host(page: int) -> str:
    return f"d{page % _site['domains']}.example.com"


def url(page: int) -> str:
    return f"http://{host(page)}/p/{page}.html"


# The domain is left out: it is the URL's host (crawler.politeness.make_entry).
_ENTRY = '0||{{"url":"{}","callback":"parse","headers":{{"Referer":["{}"]}},"meta":{{"depth":3}}}}'


def entry(page: int, referer: int) -> str:
    """The frontier entry of a link as the site spider queues it (checked
    against the codec in ``_check_entry``)."""
    return _ENTRY.format(url(page), url(referer))


def links(page: int) -> list[int]:
    """Two children (new pages: the crawl grows by one page per page), the
    parent, and the home and a menu page of the page's own domain (links
    every page of the domain repeats; duplicates once a node has sent them)."""
    domains = _site["domains"]
    dom = page % domains
    return [3 * page + 1, 3 * page + 2, (page - 1) // 3, dom, dom + domains]


def fp(page: int) -> bytes:
    return hashlib.sha1(url(page).encode()).digest()


def _check_entry() -> None:
    from scrapy import Request

    from crawler.politeness import request_entry
    from spiders.site import SiteSpider

    spider = SiteSpider()
    request = Request(url(7), callback=spider.parse, meta={"depth": 3})
    request.headers["Referer"] = url(2)
    assert request_entry(request, spider) == entry(7, 2), request_entry(request, spider)


# -- one simulated node ---------------------------------------------------------


class _Decoder:
    """Leased entries stay bytes; a page is its number, read from the URL."""

    def decode(self, lease_id: str, body: bytes, batch: Any) -> Any:
        start = body.index(b"/p/") + 3
        return int(body[start : body.index(b".", start)])

    def decode_raw(self, lease_id: str, raw: bytes, batch: Any) -> None:
        raise AssertionError("the load test seeds no raw start URLs")


class SimNode:
    def __init__(self, url_: str, shape: LoadShape, name: str) -> None:
        from scrapy.settings import Settings

        from crawler.commits import CommitPipeline
        from crawler.config import CrawlConfig
        from crawler.leases import LeaseSession
        from crawler.localseen import LocalSeen

        _site["domains"] = shape.domains
        settings = Settings(
            {
                "CONCURRENT_REQUESTS": shape.concurrency,
                "CONCURRENT_REQUESTS_PER_DOMAIN": shape.per_domain,
            }
        )
        self.cfg = CrawlConfig.from_settings(settings, shape.crawl)
        self.cfg, self.frontier = _frontier(url_, self.cfg, shape.partitions, name)
        self.stats: Counter[str] = Counter()
        self.local = LocalSeen(self.cfg.local_seen_cache)
        self.commits = CommitPipeline(
            self.frontier, self.cfg.batch_size, self._count, self.local, self.cfg.concurrency
        )
        self.leases = LeaseSession(self.frontier, self.cfg, self._count)
        self.shape = shape
        self.decoder = _Decoder()
        self.done = 0

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] += n

    def _fetch(self, lease_id: str, page: int) -> None:
        """The page's outputs: one item, its links (less those sent already)."""
        batch, local = self.commits.batch, self.local
        here = url(page)
        for link in links(page):
            there = url(link)
            f = hashlib.sha1(there.encode()).digest()
            if f in local:
                continue
            local.add_pending(f)
            batch.pushes.append((f, 0, _ENTRY.format(there, here)))
        item = f'{{"url":"{here}","title":"Page {page}","status":200}}'
        batch.items.append((hashlib.sha1(here.encode()).digest()[:12], item))
        batch.acks.append(lease_id)
        self.commits.starts.handed_out(lease_id)

    def known_ids(self) -> set[str]:
        """As ``Worker.known_ids``: leases finished and not yet committed
        (every batch the pipeline holds; nothing is being fetched here)."""
        known: set[str] = set()
        for batch in self.commits.batches():
            known.update(batch.acks)
        return known

    async def heartbeat(self) -> None:
        await self.leases.renew('{"state":"running"}', self.known_ids)
        await self.frontier.add_stats(dict(self.stats))
        self.stats.clear()
        await self.frontier.state()

    async def run(self, stop_at: float) -> None:
        await self.heartbeat()
        beat_at, beat_done = time.monotonic(), 0
        start = time.monotonic()
        while time.time() < stop_at:
            await self.commits.flush()
            now = time.monotonic()
            if self.done - beat_done >= BEAT_PAGES or now - beat_at >= 10:
                await self.heartbeat()
                beat_at, beat_done = now, self.done
            if self.leases.wants_more():
                await self.leases.refill(self.decoder, self.commits.batch)
            taken = 0
            while taken < self.shape.per_tick and self.commits.starts.may_hand_out():
                got = self.leases.take()
                if got is None:
                    break
                page: Any = got[1]  # what _Decoder made of the entry
                self._fetch(got[0], page)
                taken += 1
            self.done += taken
            if self.shape.rate:
                await asyncio.sleep(
                    max(0.0, start + self.done / self.shape.rate - time.monotonic())
                )
            elif not taken and not self.leases.ready:
                await asyncio.sleep(0.01)
        await self.commits.flush()
        await self.frontier.release_all()
        await self.frontier.client.aclose()


def _frontier(url_: str, cfg: Any, count: int, name: str) -> tuple[Any, Any]:
    """(config, frontier) of a node: of one partition, a ``Frontier`` on a
    plain client packing with hiredis; else see ``_partitioned``."""
    if count > 1:
        return _partitioned(url_, cfg, count, name)
    from redis.asyncio import Redis

    from crawler.frontier import Frontier
    from tests.benchmarks.bench_memory import _HiredisPackConnection

    client = Redis.from_url(url_, connection_class=_HiredisPackConnection)
    return cfg, Frontier(client, cfg.keys, name, cfg.seen, cfg.policy)


def _partitioned(url_: str, cfg: Any, count: int, name: str) -> tuple[Any, Any]:
    """(config, frontier) of a node of a crawl split into *count* partitions,
    built as ``RedisScheduler`` builds them: on a cluster the seed key moved
    into the crawl's slot; the tags recorded with the crawl (the first node,
    the seeder, records them; on a cluster one partition per master); the
    project's client (redis-py's asyncio cluster client on a cluster); and
    ``make_frontier``."""
    from scrapy import Spider

    from crawler.connection import async_client
    from crawler.partfrontier import make_frontier
    from crawler.topology import fit_to_redis, with_partitions

    cfg = replace(cfg, partition_count=count)
    cfg = with_partitions(fit_to_redis(cfg, url_, Spider), url_, record=True)
    if len(cfg.parts) != count:
        raise RuntimeError(f"crawl {cfg.name!r} is split into {len(cfg.parts)}, not {count}")
    return cfg, make_frontier(async_client(url_, cfg.lease_ms / 1000), cfg, name)


async def _child(url_: str, shape: LoadShape, first: int, count: int, times: list[float]) -> Any:
    """Run nodes first..first+count-1 until times[2]; round trips in the window."""
    _use_lua_dir(shape.lua_dir)
    nodes = [SimNode(url_, shape, f"sim-{n}") for n in range(first, first + count)]
    tasks = [asyncio.create_task(node.run(times[2])) for node in nodes]
    await asyncio.sleep(max(0.0, times[0] - time.time()))
    rt0 = sum(n.frontier.roundtrips for n in nodes)
    await asyncio.sleep(max(0.0, times[1] - time.time()))
    rt1 = sum(n.frontier.roundtrips for n in nodes)
    await asyncio.gather(*tasks)
    return {"roundtrips": rt1 - rt0}


def _use_lua_dir(lua_dir: str) -> None:
    """Load the scripts from *lua_dir* (a variant being measured)."""
    if not lua_dir:
        return
    from crawler import scripts

    def source(name: str) -> str:
        text = (Path(lua_dir) / f"{name}.lua").read_text()
        return source("_polite") + "\n" + text if name in scripts._POLITE else text

    scripts.script_source = source


# -- the driver -------------------------------------------------------------------


def script_names(lua_dir: str = "") -> dict[str, str]:
    """SHA1 -> script name, as the nodes load them."""
    from crawler import scripts

    _use_lua_dir(lua_dir)
    return {
        hashlib.sha1(scripts.script_source(n).encode()).hexdigest(): n
        for n in scripts.Scripts.__dataclass_fields__
    }


def seed(client: redis.Redis, url_: str, shape: LoadShape) -> None:
    """A fresh crawl with SEED_PAGES pages queued, through the real commit."""
    client.flushall()

    async def push() -> None:
        node = SimNode(url_, shape, "seeder")
        batch = node.commits.batch
        for page in range(SEED_PAGES):
            batch.pushes.append((fp(page), 0, entry(page, max(page - 1, 0) // 3)))
            if len(batch.pushes) >= 2000:
                await node.frontier.commit(batch)
                batch = node.commits.batch = type(batch)()
        await node.frontier.commit(batch)
        await node.frontier.client.aclose()

    asyncio.run(push())


# Commands the nodes send themselves (not only from scripts): with EVALSHA,
# commandstats' time for these is the time spent executing commands.
_TOP_LEVEL = ("evalsha", "zrange", "hkeys", "hgetall", "hmget", "type", "scard", "zcard")


def _start_nodes(server_url: str, shape: LoadShape, times: list[float]) -> list[Any]:
    """The node processes, *shape.procs* of them, the nodes shared out."""
    procs, per = [], -(-shape.nodes // shape.procs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for first in range(0, shape.nodes, per):
        count = min(per, shape.nodes - first)
        args = [server_url, json.dumps(asdict(shape)), str(first), str(count), json.dumps(times)]
        cmd = [sys.executable, "-m", "tests.benchmarks.bench_redis_load", "--child", *args]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True))
    return procs


def _roundtrips(procs: list[Any]) -> int:
    """Wait for the node processes; the round trips they made in the window."""
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode:
            raise RuntimeError(f"a load process exited with status {proc.returncode}")
        total += json.loads(out.strip().splitlines()[-1])["roundtrips"]
    return total


class _Meter:
    """Where a window's figures are read: ``INFO`` of every master (one for a
    single Redis) and the ``done`` counter of every partition's stats hash
    (the tags recorded in ``{crawl}:config``)."""

    def __init__(self, client: Any, crawl: str) -> None:
        self.client = client
        if isinstance(client, redis.Redis):
            self.shards = [client]
        else:  # redis-py's cluster client: every master, straight
            nodes = client.get_primaries()
            self.shards = [redis.Redis(host=n.host, port=n.port, socket_timeout=300) for n in nodes]
        self.pids = [int(shard.info("server")["process_id"]) for shard in self.shards]
        tag = "{" + crawl + "}"
        raw = client.hget(f"{tag}:config", "partitions")
        self.tags: list[str] = json.loads(raw) if raw else [tag]

    @property
    def own_calls(self) -> int:
        """Commands ``read`` adds to a window's count (4 on one Redis)."""
        return 2 * len(self.shards) + len(self.tags) + 1

    def wakes(self) -> list[int]:
        """Voluntary context switches of each server's main thread so far
        ([] when a server is not a local process this user can read)."""
        counts = []
        for pid in self.pids:
            try:
                status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
            except OSError:
                return []
            line = next(x for x in status.splitlines() if x.startswith("voluntary_ctxt"))
            counts.append(int(line.split()[1]))
        return counts

    def read(self) -> tuple[list[float], int, list[int], float]:
        """(CPU s of each shard, commands, pages acked by each partition, s executing)."""
        cpus, calls, executing = [], 0, 0.0
        for shard in self.shards:
            cpu = shard.info("cpu")
            stats = shard.info("commandstats")
            cpus.append(cpu["used_cpu_user"] + cpu["used_cpu_sys"])
            calls += sum(v["calls"] for v in stats.values())
            executing += sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in _TOP_LEVEL) / 1e6
        done = [int(self.client.hget(f"{tag}:stats", "done") or 0) for tag in self.tags]
        return cpus, calls, done, executing

    def queue_bytes(self) -> float:
        """Bytes per queued request: ``MEMORY USAGE`` of every partition's
        queue lists over their entries."""
        used = entries = 0
        for tag in self.tags:
            for prio in self.client.zrange(f"{tag}:prios", 0, -1):
                key = f"{tag}:q:{prio.decode()}"
                used += int(self.client.memory_usage(key, samples=0) or 0)
                entries += int(self.client.llen(key))
        return used / max(entries, 1)


def run_load(
    server_url: str, shape: LoadShape, profile: bool = False, memory: bool = False
) -> LoadResult:
    """One node count: seed, start the nodes, measure the window [times[0], times[1]].
    With *memory*, also bytes per queued request after the seed."""
    client = _sync_client(server_url, shape, profile)
    seed(client, server_url, shape)
    meter = _Meter(client, shape.crawl)
    queue_bytes = meter.queue_bytes() if memory else 0.0
    overhead = slowlog_overhead(client) if profile else 0.0
    t0 = time.time() + 1.0 + shape.nodes / 50  # connections and first heartbeats
    times = [t0 + shape.warmup, t0 + shape.warmup + shape.seconds]
    procs = _start_nodes(server_url, shape, [*times, times[1] + 0.5])
    time.sleep(max(0.0, times[0] - time.time()))
    if profile:
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)
        client.slowlog_reset()
    wakes0 = meter.wakes()
    cpu0, calls0, done0, exec0 = meter.read()
    w0 = time.monotonic()
    slow = _drain_slowlog(client, times[1]) if profile else []
    time.sleep(max(0.0, times[1] - time.time()))
    cpu1, calls1, done1, exec1 = meter.read()
    wakes1 = meter.wakes()
    result = _window(shape, (cpu0, cpu1), (done0, done1), time.monotonic() - w0)
    if wakes0 and wakes1:
        result.wakes = [b - a for a, b in zip(wakes0, wakes1, strict=True)]
    result.queue_bytes = queue_bytes
    result.executing_s = exec1 - exec0
    result.commands = calls1 - calls0 - meter.own_calls  # less our INFO/HGET calls
    if profile:
        client.config_set("slowlog-log-slower-than", 10_000)
        result.profile = _split(slow, script_names(shape.lua_dir), overhead)
    result.roundtrips = _roundtrips(procs)
    return result


def _sync_client(server_url: str, shape: LoadShape, profile: bool) -> Any:
    """The driver's client: plain for one partition (as ever); the project's
    (a cluster client on a cluster) for a partitioned crawl."""
    if shape.partitions <= 1:
        return redis.Redis.from_url(server_url, socket_timeout=300)
    from crawler.connection import sync_client

    client = sync_client(server_url, socket_timeout=300)
    if profile and not isinstance(client, redis.Redis):
        raise ValueError("--profile reads one Redis's slowlog: not on a cluster")
    return client


def _window(shape: LoadShape, cpu: Any, done: Any, wall: float) -> LoadResult:
    """The window's result from (start, end) readings of every shard's CPU
    and every partition's pages."""
    shard_cpu = [b - a for a, b in zip(*cpu, strict=True)]
    part_pages = [b - a for a, b in zip(*done, strict=True)]
    result = LoadResult(shape, sum(part_pages), sum(shard_cpu), wall)
    result.shard_cpu, result.part_pages = shard_cpu, part_pages
    return result


def _drain_slowlog(client: redis.Redis, until: float) -> list[Any]:
    """Every command's slowlog entry until *until* (read and reset atomically)."""
    entries: list[Any] = []
    while True:
        last = time.time() >= until
        time.sleep(0 if last else min(0.1, max(0.0, until - time.time())))
        pipe = client.pipeline(transaction=True)
        pipe.execute_command("SLOWLOG", "GET", "-1")
        pipe.execute_command("SLOWLOG", "RESET")
        got, _ = pipe.execute()
        entries += got
        if last:
            return entries


def slowlog_overhead(client: redis.Redis, calls: int = 2000) -> float:
    """µs the slowlog adds to a script per command it calls (logging each):
    a script of *calls* HGETs timed by ``commandstats`` without it, by the
    slowlog with it."""
    script = client.register_script("for i = 1, ARGV[1] do redis.call('HGET', 'x', 'y') end")
    client.config_set("slowlog-log-slower-than", -1)
    script(args=[1])
    before = client.info("commandstats")["cmdstat_evalsha"]
    for _ in range(20):
        script(args=[calls])
    after = client.info("commandstats")["cmdstat_evalsha"]
    off = (after["usec"] - before["usec"]) / (after["calls"] - before["calls"])
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    for _ in range(20):
        script(args=[calls])
    entries = client.execute_command("SLOWLOG", "GET", "-1")
    on = [e[2] for e in entries if e[3][0].lower() == b"evalsha"]
    client.config_set("slowlog-log-slower-than", 10_000)
    return max(0.0, (sum(on) / len(on) - off) / calls)


def _split(entries: list[Any], names: dict[str, str], overhead: float = 0.0) -> dict[str, Any]:
    """Time executing commands, by script (EVALSHA's SHA) or command, per page.

    Redis 6 logs the commands a script calls (client ``?:0``) before the
    script itself, so each is charged to the next script entry: a script's
    time splits into its commands' and its own (Lua: decoding, matching,
    loops), less *overhead* per command it called (the slowlog's own
    bookkeeping, see ``slowlog_overhead``). Pages are counted in the log
    itself, as the items commit.lua stored (one per page, HSETNX), since
    the log's window is not exactly the counters'."""
    out = _charge(entries, names)
    per = max(out.get("commit.lua", {}).get("inner", {}).get("hsetnx", [1])[0], 1)
    for row in out.values():
        row["us"] -= overhead * sum(n for n, _ in row["inner"].values())
        row["own"] = row["us"] - sum(us for _, us in row["inner"].values())
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]["us"]))
    out["_pages"] = {"pages": per, "overhead": overhead}
    return out


def _charge(entries: list[Any], names: dict[str, str]) -> dict[str, Any]:
    """name -> {calls, us, inner: {command: [calls, us]}}, oldest entry first."""
    out: dict[str, Any] = {}
    inner: list[tuple[str, int]] = []
    for item in sorted(entries, key=lambda e: e[0]):
        duration, argv, who = item[2], item[3], item[4]
        cmd = argv[0].decode().lower()
        if who == b"?:0":
            inner.append((cmd, duration))
            continue
        if cmd in ("evalsha", "eval"):
            cmd = names.get(argv[1].decode(), "script " + argv[1].decode()[:8]) + ".lua"
        if cmd not in ("slowlog", "exec", "multi", "info", "config"):
            row = out.setdefault(cmd, {"calls": 0, "us": 0, "inner": {}})
            row["calls"] += 1
            row["us"] += duration
            for name, micros in inner:
                calls_us = row["inner"].setdefault(name, [0, 0])
                calls_us[0] += 1
                calls_us[1] += micros
        inner.clear()
    return out


# -- memory per queued request ------------------------------------------------------

_SHORT = {"url": "u", "callback": "c", "headers": "h", "meta": "m"}


def _short(doc: dict[str, Any], origin: str = "") -> str:
    """*doc* with one-letter keys, one-value headers as strings, and URLs of
    *origin* relative to it (what a per-domain queue's key would say)."""

    def rel(u: str) -> str:
        return u[len(origin) :] if origin and u.startswith(origin + "/") else u

    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "url":
            value = rel(value)
        elif key == "headers":
            value = {h: rel(v[0]) if len(v) == 1 else v for h, v in value.items()}
        out[_SHORT.get(key, key)] = value
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def entry_variants(stored: str) -> dict[str, str]:
    """The stored entry "<deliveries>|<domain>|<json>" and compact forms of it."""
    from urllib.parse import urlsplit

    deliveries, domain, body = stored.split("|", 2)
    doc = json.loads(body)
    parts = urlsplit(doc["url"])
    origin = f"{parts.scheme}://{parts.netloc}"
    same = parts.hostname == domain
    return {
        "as stored": stored,
        "domain left out (= URL host)": f"{deliveries}|{'' if same else domain}|{body}",
        "+ one-letter keys, header as string": f"|{'' if same else domain}|{_short(doc)}",
        "+ URLs relative to the origin": f"|{'' if same else domain}|{_short(doc, origin)}",
    }


def web_urls(seed: int = 13) -> Any:
    """Endless web-like URLs: 2,000 sites in random order, each with its own
    categories; slugs of made-up words, numeric ids, some query strings."""
    import random

    rnd = random.Random(seed)

    def word() -> str:
        return "".join(rnd.choice("abcdefghiklmnoprstuvwy") for _ in range(rnd.randint(3, 9)))

    sites = [
        f"www.{word()}{rnd.choice(['', '-shop', 'news'])}.{rnd.choice(['com', 'de', 'org'])}"
        for _ in range(2000)
    ]
    cats = {site: [word() for _ in range(20)] for site in sites}
    while True:
        site = rnd.choice(sites)
        slug = "-".join(word() for _ in range(rnd.randint(2, 5)))
        url = f"https://{site}/{rnd.choice(cats[site])}/{slug}-{rnd.randint(1000, 9999999)}.html"
        if rnd.random() < 0.2:
            url += f"?page={rnd.randint(2, 40)}"
        yield url


def _requests(count: int) -> dict[str, list[Any]]:
    """Request shapes: the benchmark crawl's (callback, depth, Referer), a plain
    GET with a callback, a plain GET without (the default callback)."""
    from scrapy import Request

    from spiders.site import SiteSpider

    spider = SiteSpider()
    shapes: dict[str, list[Any]] = {"site spider (bench)": [], "GET + callback": [], "GET": []}
    urls = web_urls()
    for i in range(count):
        site = f"http://127.0.0.1:8080/page/{i}.html"
        ref = {"Referer": f"http://127.0.0.1:8080/page/{max(0, (i - 1) // 3)}.html"}
        shapes["site spider (bench)"].append(
            Request(site, callback=spider.parse, meta={"depth": 7}, headers=ref)
        )
        web = next(urls)
        shapes["GET + callback"].append(Request(web, callback=spider.parse))
        shapes["GET"].append(Request(web))
    return shapes


def _bytes_per(client: redis.Redis, key: str, values: list[str], kind: str = "list") -> float:
    client.delete(key)
    for start in range(0, len(values), 1000):
        chunk = values[start : start + 1000]
        if kind == "list":
            client.rpush(key, *chunk)
        else:
            client.hset(key, mapping={str(start + n): v for n, v in enumerate(chunk)})
    used = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    client.delete(key)
    return used / len(values)


def memory_breakdown(server_url: str, count: int = 100_000) -> list[str]:
    """Bytes per queued request: through the real commit path, then by part."""
    from crawler.politeness import request_entry
    from spiders.site import SiteSpider

    client = redis.Redis.from_url(server_url, socket_timeout=300)
    spider = SiteSpider()
    lines = []
    for shape, requests in _requests(count).items():
        entries = [request_entry(r, spider) for r in requests]
        committed = _commit_all(client, server_url, requests, entries)
        lines.append(f"{shape}: e.g. {entries[1]!r} ({len(entries[1].encode())} B)")
        lines.append(f"  {'':38} {'entry B':>8} {'list B':>7} {'LZF list B':>10}")
        for name, _ in entry_variants(entries[1]).items():
            values = [entry_variants(e)[name] for e in entries]
            plain = _bytes_per(client, "v", values)
            client.config_set("list-compress-depth", 1)
            packed = _bytes_per(client, "v", values)
            client.config_set("list-compress-depth", 0)
            mean = sum(len(v.encode()) for v in values) / len(values)
            lines.append(f"  {name:38} {mean:>8.1f} {plain:>7.1f} {packed:>10.1f}")
        lines.append(f"  queue after the real commit: {committed:.1f} B/request")
        held = [f"0|{e}" for e in entries[:5000]]
        lines.append(
            f"  a parked one ({{N}}:park:<d> list) {_bytes_per(client, 'v', held):.1f} B, "
            f"a leased one ({{N}}:held:<node> hash) {_bytes_per(client, 'v', held, 'hash'):.1f} B"
        )
    return lines


def _commit_all(
    client: redis.Redis, server_url: str, requests: list[Any], entries: list[str]
) -> float:
    """Queue *entries* through ``Frontier.commit``; bytes per request of the queue."""
    from scrapy.utils.request import fingerprint

    client.flushall()
    shape = LoadShape(nodes=1, crawl="memory")

    async def push() -> None:
        node = SimNode(server_url, shape, "memory")
        for start in range(0, len(entries), 2000):
            batch = type(node.commits.batch)()
            part = zip(requests[start : start + 2000], entries[start : start + 2000], strict=True)
            batch.pushes.extend((fingerprint(r), 0, e) for r, e in part)
            await node.frontier.commit(batch)
        await node.frontier.client.aclose()

    asyncio.run(push())
    key = "{memory}:q:0"
    used = int(client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0"))
    return used / int(client.llen(key))


# -- the sweep and its table ------------------------------------------------------


def sweep(
    server_url: str, counts: tuple[int, ...], base: LoadShape, profile: bool = False
) -> list[LoadResult]:
    _check_entry()
    results = []
    for n in counts:
        shape = replace(base, nodes=n, procs=min(base.procs, n))
        progress(f"redis load: {n} nodes, {shape.per_tick} pages per tick, {shape.seconds:.0f}s")
        result = run_load(server_url, shape, profile)
        progress(
            f"  {result.us_per_page:.1f} µs Redis CPU/page, {result.rate:,.0f} pages/s, "
            f"Redis at {result.cpu_s / result.wall_s:.2f} cores"
        )
        results.append(result)
    return results


def render(results: list[LoadResult]) -> str:
    lines = [
        f"{'nodes':>6} {'pages/tick':>10} {'pages/s':>9} {'Redis µs/page':>14} "
        f"{'Redis cores':>11} {'round trips/page':>16} {'commands/page':>13}"
    ]
    for r in results:
        lines.append(
            f"{r.shape.nodes:>6} {r.shape.per_tick:>10} {r.rate:>9,.0f} {r.us_per_page:>14.1f} "
            f"{r.cpu_s / r.wall_s:>11.2f} "
            f"{r.roundtrips / max(r.pages, 1):>16.3f} {r.commands / max(r.pages, 1):>13.2f}"
        )
    return "\n".join(lines)


def render_profile(results: list[LoadResult], top: int = 8) -> str:
    """Per node count: where the time executing commands goes (SLOWLOG)."""
    out = []
    for r in results:
        meta = r.profile["_pages"]
        per = meta["pages"]
        rows = {k: v for k, v in r.profile.items() if k != "_pages"}
        total = sum(v["us"] for v in rows.values()) or 1
        out.append(
            f"{r.shape.nodes} nodes, {r.shape.per_tick} pages/tick, {per:,} pages logged: "
            f"{total / per:.1f} µs/page executing commands (slowlog's own "
            f"{meta['overhead']:.2f} µs per command taken off; CPU while logging "
            f"{r.us_per_page:.1f} µs/page)"
        )
        out.append(f"  {'':16} {'calls/page':>10} {'µs/call':>8} {'µs/page':>8} {'share':>6}")
        for name, row in rows.items():
            if row["us"] / total < 0.002:
                continue
            out.append(
                f"  {name:16} {row['calls'] / per:>10.3f} {row['us'] / row['calls']:>8.1f} "
                f"{row['us'] / per:>8.2f} {row['us'] / total:>6.1%}"
            )
            if not row["inner"]:
                continue
            parts = sorted(row["inner"].items(), key=lambda kv: -kv[1][1])
            text = ", ".join(f"{c} {n / per:.2f}x {us / per:.2f}" for c, (n, us) in parts[:top])
            out.append(f"    Lua itself {row['own'] / per:.2f} µs/page; per page: {text}")
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_redis_load")
    parser.add_argument("--nodes", default=",".join(map(str, NODE_COUNTS)))
    parser.add_argument("--per-tick", type=int, default=16, help="pages between two ticks")
    parser.add_argument("--concurrency", type=int, default=16, help="CONCURRENT_REQUESTS")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0, help="pages/s of each node (0: full)")
    parser.add_argument("--domains", type=int, default=DOMAINS, help="domains of the site")
    parser.add_argument("--per-domain", type=int, default=8, help="CONCURRENT_REQUESTS_PER_DOMAIN")
    parser.add_argument("--memory", action="store_true", help="bytes per queued request")
    parser.add_argument(
        "--config", action="append", default=[], metavar="NAME=VALUE", help="CONFIG SET"
    )
    parser.add_argument("--profile", action="store_true", help="split the time by script")
    parser.add_argument("--lua-dir", default="", help="load the Lua scripts from this directory")
    parser.add_argument("--url", default="", help="a running Redis (default: start one)")
    parser.add_argument(
        "--partitions", type=int, default=1, help="CRAWLER_PARTITIONS (on --url, a cluster too)"
    )
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="compare one Redis (P=1) with an N-master Redis Cluster (P=N), side by side",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        url_, shape_json, first, count, times = args.child
        shape = LoadShape(**json.loads(shape_json))
        out = asyncio.run(_child(url_, shape, int(first), int(count), json.loads(times)))
        print(json.dumps(out))
        return 0
    if args.cluster:
        return _compare(args)
    server = None if args.url else RedisServer(Path(tempfile.mkdtemp(prefix="redis-load-")))
    try:
        server_url = args.url or server.start().url  # type: ignore[union-attr]
        client = redis.Redis.from_url(server_url)
        for pair in args.config:
            client.config_set(*pair.split("=", 1))
        if args.memory:
            print("\n".join(memory_breakdown(server_url)))
            return 0
        results = _sweep_args(server_url, args)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)
    print(render(results))
    if args.profile:
        print()
        print(render_profile(results))
    return 0


def _base(args: argparse.Namespace) -> LoadShape:
    return LoadShape(
        nodes=0,
        per_tick=args.per_tick,
        concurrency=args.concurrency,
        seconds=args.seconds,
        procs=args.procs,
        lua_dir=args.lua_dir,
        domains=args.domains,
        per_domain=args.per_domain,
        partitions=args.partitions,
        rate=args.rate,
    )


def _sweep_args(server_url: str, args: argparse.Namespace) -> list[LoadResult]:
    counts = tuple(int(n) for n in args.nodes.split(","))
    return sweep(server_url, counts, _base(args), args.profile)


def _compare(args: argparse.Namespace) -> int:
    """``--cluster N``: one Redis and an N-master cluster (bench_cluster_load)."""
    from tests.benchmarks import bench_cluster_load

    work = Path(tempfile.mkdtemp(prefix="redis-cluster-load-"))
    counts = tuple(int(n) for n in args.nodes.split(","))
    try:
        result = bench_cluster_load.compare(counts, _base(args), work, args.cluster)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(bench_cluster_load.render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
