"""``scrapy seed`` and ``scrapy export``, timed as the commands a user runs
(process start-up included)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.bench_util import (
    ROOT,
    SCRAPY,
    ForeignLoad,
    RedisServer,
    count_lines,
    parse_time_v,
    peak_rss_cmd,
    progress,
    scrapy_env,
)


@dataclass
class SeedResult:
    lines: int
    queued: int
    seconds: float
    peak_mb: float | None
    ok: bool
    output: str
    foreign_cpu: float

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


def _seed_once(server: RedisServer, work: Path, lines: int) -> SeedResult:
    path = work / f"seeds-{lines}.txt"
    with open(path, "w") as handle:
        for i in range(lines):
            handle.write(f"http://127.0.0.1:8080/page/{i}.html\n")
    name = f"bench-seed-{lines}"
    cmd, timed = peak_rss_cmd(
        [SCRAPY, "seed", "site", "-i", str(path), "-s", f"CRAWLER_CRAWL_NAME={name}"]
    )
    t0, load = time.monotonic(), ForeignLoad()
    out = subprocess.run(
        cmd, cwd=ROOT, env=scrapy_env(REDIS_URL=server.url), capture_output=True, text=True
    )
    seconds = time.monotonic() - t0
    foreign = load.cores()
    peak = parse_time_v(out.stderr) if timed else _children_peak_mb()
    queued = server.client().llen(f"{{{name}}}:q:0")
    summary = out.stdout.strip().splitlines()[-1:] or out.stderr.strip().splitlines()[-1:]
    ok = out.returncode == 0 and queued == lines
    return SeedResult(lines, int(queued), seconds, peak, ok, summary[0], foreign)


def _children_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def seed(work: Path, lines: int) -> tuple[SeedResult, SeedResult]:
    """``scrapy seed site -i FILE`` of *lines* URLs, and of a tenth as many
    (to see whether peak memory grows with the file)."""
    server = RedisServer(work / "redis-seed").start()
    try:
        results = []
        for n in (lines // 10, lines):
            progress(f"scrapy seed: {n:,} URLs from a file")
            result = _seed_once(server, work, n)
            peak = f"{result.peak_mb:.0f} MB" if result.peak_mb else "peak RSS unknown"
            progress(
                f"  {result.rate:,.0f} URLs/s ({result.seconds:.1f}s), peak RSS {peak}: "
                f"{result.output}"
            )
            results.append(result)
        return results[0], results[1]
    finally:
        server.stop()


@dataclass
class ExportResult:
    items: int
    written: int
    seconds: float
    output: str
    foreign_cpu: float

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def ok(self) -> bool:
        return self.written == self.items


def export(work: Path, items: int) -> ExportResult:
    """Store *items* items in a crawl's item hash, then time ``scrapy export``."""
    server = RedisServer(work / "redis-export").start()
    try:
        name = "bench-export"
        client = server.client()
        progress(f"scrapy export: {items:,} items")
        pipe = client.pipeline(transaction=False)
        for i in range(items):
            item = {
                "url": f"http://127.0.0.1:8080/page/{i}.html",
                "title": f"Page {i}",
                "status": 200,
            }
            pipe.hset(f"{{{name}}}:items", i.to_bytes(12, "big"), json.dumps(item))
            if i % 10000 == 9999:
                pipe.execute()
        pipe.execute()
        out_path = work / "export.jsonl"
        t0, load = time.monotonic(), ForeignLoad()
        out = subprocess.run(
            [SCRAPY, "export", "site", "-o", str(out_path), "-s", f"CRAWLER_CRAWL_NAME={name}"],
            cwd=ROOT,
            env=scrapy_env(REDIS_URL=server.url),
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - t0
        written = count_lines(out_path)
        message = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        result = ExportResult(items, written, seconds, message, load.cores())
        progress(f"  {result.rate:,.0f} items/s ({seconds:.1f}s): {message}")
        return result
    finally:
        server.stop()
