"""Issue 4's benchmark suite: one command, one table.

    .venv/bin/python -m tests.benchmarks.run            # full run (20,000 pages, 10M URLs)
    .venv/bin/python -m tests.benchmarks.run --quick    # smoke run, about two minutes
    .venv/bin/python -m tests.benchmarks.run --only plain,project --pages 5000

Run from the repository root after ``pip install -r requirements.txt``. It
needs Debian's nginx for the crawls (installed with apt-get when missing and
running as root) and starts its own nginx and redis-servers on loopback.
Progress goes to stderr; the table, with each of the issue's targets and
PASS/FAIL next to the figure, goes to stdout. See tests/benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_util import RedisServer, progress

PARTS = (
    "plain",
    "scrapy-redis",
    "project",
    "project-recrawl",
    "seen-exact",
    "seen-bloom",
    "queue",
    "dupefilter",
    "seed",
    "export",
    "redis-load",
    "redis-cluster-load",
    "broad",
    "broad-polite",
)
GROUPS = {
    "crawls": ("plain", "scrapy-redis", "project", "project-recrawl"),
    "memory": ("seen-exact", "seen-bloom", "queue", "dupefilter"),
    "commands": ("seed", "export"),
    "load": ("redis-load", "redis-cluster-load"),
}


@dataclass(frozen=True)
class Sizes:
    pages: int
    fingerprints: int
    probe: int
    queue: int
    dupefilter: int
    seed: int
    export: int
    load_seconds: float = 8.0  # measured seconds per node count of the Redis load test
    cluster_nodes: tuple[int, ...] = (10, 25)  # node counts of the cluster comparison
    broad: tuple[int, int] = (40, 60)  # hosts and pages per host of the slow broad crawl
    broad_polite: tuple[int, int] = (40, 20)  # the same, with DOWNLOAD_DELAY = POLITE_DELAY


FULL = Sizes(20_000, 10_000_000, 100_000, 100_000, 1_000_000, 1_000_000, 200_000)
QUICK = Sizes(
    2_000, 200_000, 10_000, 20_000, 100_000, 100_000, 50_000, 3.0, (10,), (20, 30), (20, 10)
)
#: DOWNLOAD_DELAY of the polite broad crawl (part broad-polite).
POLITE_DELAY = 1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description="Benchmarks of issue 4: throughput against plain Scrapy and scrapy-redis, "
        "Redis round trips and memory, seed and export speed.",
    )
    parser.add_argument("--pages", type=int, help="pages in the generated site (default 20000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes for a smoke run: 2,000 pages, 200k fingerprints, 100k seed lines",
    )
    parser.add_argument(
        "--only",
        metavar="NAME,...",
        help=f"run only these parts: {', '.join(PARTS)}, or the groups {', '.join(GROUPS)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    selected: list[str] = []
    for name in (args.only or ",".join(PARTS)).split(","):
        name = name.strip()
        if name in GROUPS:
            selected += GROUPS[name]
        elif name in PARTS:
            selected.append(name)
        elif name:
            parser.error(f"unknown part {name!r}; choose from {', '.join([*PARTS, *GROUPS])}")
    args.parts = [p for p in PARTS if p in selected]
    if args.pages is not None and args.pages < 100:
        parser.error("--pages must be at least 100")
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so nginx and the redis-servers are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    load = os.getloadavg()[0]
    sizes = QUICK if args.quick else FULL
    if args.pages:
        sizes = replace(sizes, pages=args.pages)
    work = Path(tempfile.mkdtemp(prefix="crawler-bench-"))
    work.chmod(0o755)  # nginx's workers (nobody, when we are root) read the site from it
    progress(f"work directory {work}; parts: {', '.join(args.parts)}")
    started = time.monotonic()
    results: dict[str, Any] = {}
    failed = False
    try:
        failed = run_parts(args.parts, sizes, work, results)
    finally:
        elapsed = time.monotonic() - started
        keep = args.keep or failed
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(render(results, sizes, elapsed, load))
    if keep:
        print(f"\nlogs and feeds kept in {work}")
    return 0


def run_parts(parts: list[str], sizes: Sizes, work: Path, results: dict[str, Any]) -> bool:
    """Run the selected parts into *results*; True if a crawl went wrong."""
    from tests.benchmarks import bench_memory

    failed = False
    crawlers = [p for p in parts if p in GROUPS["crawls"]]
    if crawlers:
        try:
            failed = run_crawls(crawlers, sizes.pages, work, results)
        except Exception as exc:
            progress(f"crawls: FAILED: {type(exc).__name__}: {exc}")
            results["crawls"] = exc
            failed = True
    # Timed commands first, on a quiet machine.
    for part in ("seed", "export"):
        if part in parts:
            _guarded(results, part, _command, part, sizes, work)
    if "redis-load" in parts:
        _guarded(results, "redis-load", _redis_load, sizes, work)
    if "redis-cluster-load" in parts:
        _guarded(results, "redis-cluster-load", _redis_cluster_load, sizes, work)
    broads = (("broad", sizes.broad, 0.0), ("broad-polite", sizes.broad_polite, POLITE_DELAY))
    for part, (hosts, pages), delay in broads:
        if part in parts:
            from tests.benchmarks import bench_broad

            _guarded(results, part, bench_broad.run, work / part, hosts, pages, delay)
    # The Bloom filling is bound by Redis's CPU (its Lua script), the others by
    # this process's, so it runs alongside them in a child process on the
    # other core. Nothing timed against a target runs meanwhile.
    bloom = None
    try:
        if "seen-bloom" in parts:
            bloom = bench_memory.start_child(work, "bloom", sizes.fingerprints, sizes.probe)
        if "seen-exact" in parts:
            exact = (work, "exact", sizes.fingerprints, 0)
            _guarded(results, "seen-exact", bench_memory.seen_bytes, *exact)
        if "queue" in parts:
            _guarded(results, "queue", bench_memory.queue_bytes, work, sizes.queue)
        if "dupefilter" in parts:
            measure = bench_memory.scrapy_redis_dupefilter_bytes
            _guarded(results, "dupefilter", measure, work, sizes.dupefilter)
        if bloom is not None:
            _guarded(results, "seen-bloom", bench_memory.child_result, bloom)
    finally:
        if bloom is not None and bloom.poll() is None:
            bloom.terminate()
            bloom.wait(30)
    return failed


def _command(part: str, sizes: Sizes, work: Path) -> Any:
    from tests.benchmarks import bench_commands

    if part == "seed":
        return bench_commands.seed(work, sizes.seed)
    return bench_commands.export(work, sizes.export)


def _redis_load(sizes: Sizes, work: Path) -> Any:
    """Issue 13's Redis-side load test (tests/benchmarks/bench_redis_load.py)."""
    from tests.benchmarks.bench_redis_load import NODE_COUNTS, LoadShape, sweep

    server = RedisServer(work / "redis-load").start()
    try:
        return sweep(server.url, NODE_COUNTS, LoadShape(0, seconds=sizes.load_seconds))
    finally:
        server.stop()


def _redis_cluster_load(sizes: Sizes, work: Path) -> Any:
    """Issue 13: one Redis (P=1) against a 3-master Redis Cluster (P=3) under
    the same load test (tests/benchmarks/bench_cluster_load.py)."""
    from tests.benchmarks.bench_cluster_load import compare
    from tests.benchmarks.bench_redis_load import LoadShape

    shape = LoadShape(0, seconds=sizes.load_seconds)
    return compare(sizes.cluster_nodes, shape, work / "redis-cluster-load")


def _guarded(results: dict[str, Any], part: str, body: Any, *args: Any) -> None:
    """``results[part] = body(*args)``; a part that fails is reported, and the others run."""
    try:
        results[part] = body(*args)
    except Exception as exc:
        progress(f"{part}: FAILED: {type(exc).__name__}: {exc}")
        results[part] = exc


def run_crawls(crawlers: list[str], pages: int, work: Path, results: dict[str, Any]) -> bool:
    from tests.benchmarks.bench_crawls import CrawlBench
    from tests.benchmarks.bench_site import Nginx, generate, nginx_binary

    nginx_binary()
    site_dir = work / "site"
    progress(f"generating {pages:,} pages in {site_dir}")
    generate(site_dir, pages)
    site = Nginx(site_dir, work / "nginx")
    redis = RedisServer(work / "redis-crawl")
    failed = False
    try:
        site.start()
        redis.start()
        results["redis_version"] = redis.version()
        progress(f"nginx on {site.base}, redis-server {results['redis_version']} on {redis.url}")
        bench = CrawlBench(site, pages, redis, work)
        runs: list[tuple[str, Any]] = []
        if "plain" in crawlers:
            runs.append(("plain-1", bench.plain))
        if "scrapy-redis" in crawlers:
            runs += [("scrapy-redis-1", lambda: bench.scrapy_redis(1))]
            runs += [("scrapy-redis-2", lambda: bench.scrapy_redis(2))]
        if "project" in crawlers:
            runs += [("project-1", lambda: bench.project(1))]
            runs += [("project-2", lambda: bench.project(2))]
        if "project-recrawl" in crawlers:
            runs += [("project-recrawl-2", lambda: bench.project(2, recrawl=True))]
        for key, run in runs:
            try:
                results[key] = run()
                failed = failed or not results[key].complete
            except Exception as exc:
                progress(f"{key}: FAILED: {type(exc).__name__}: {exc}")
                results[key] = exc
                failed = True
    finally:
        site.stop()
        redis.stop()
    return failed


# -- the table ------------------------------------------------------------------

# Other processes using more CPU than this (cores, on average) disturb a run.
_DISTURBED = 0.15


def _ok(results: dict[str, Any], key: str) -> Any:
    value = results.get(key)
    return None if value is None or isinstance(value, Exception) else value


def _num(value: float | None, fmt: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{suffix}"


def _verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "n/a"
    good = value >= target if higher_is_better else value <= target
    return "PASS" if good else "FAIL"


def _fp_verdict(observed: int, probe: int, rate: float = 1e-4) -> str:
    """FAIL only if seeing this many false positives among *probe* new URLs
    would be a less than 1% chance at the configured rate (a Poisson tail)."""
    expected = probe * rate
    below = sum(math.exp(-expected) * expected**k / math.factorial(k) for k in range(observed))
    return "FAIL" if 1 - below < 0.01 else "PASS"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _cell(results: dict[str, Any], key: str, text: Any) -> str:
    """*text(result)* for a run that completed; why not, otherwise."""
    value = results.get(key)
    if value is None:
        return "-"
    if isinstance(value, Exception):
        return "error"
    return str(text(value))


def render(results: dict[str, Any], sizes: Sizes, elapsed: float, load: float) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    notes: list[str] = []

    def row(
        metric: str,
        plain: str = "",
        sr: str = "",
        ours: str = "",
        target: str = "",
        verdict: str = "",
    ) -> None:
        rows.append((metric, plain, sr, ours, target, verdict))

    def rate(key: str) -> float | None:
        run = _ok(results, key)
        return run.rate if run is not None and run.complete else None

    def rate_cell(key: str) -> str:
        run = _ok(results, key)
        if run is None:
            return _cell(results, key, str)
        text = _num(run.rate)
        return text if run.complete else f"{text} (incomplete)"

    p1, s1, s2, o1, o2 = (
        rate(k) for k in ("plain-1", "scrapy-redis-1", "scrapy-redis-2", "project-1", "project-2")
    )
    row(
        f"pages/s, 1 node ({sizes.pages:,} pages)",
        rate_cell("plain-1"),
        rate_cell("scrapy-redis-1"),
        rate_cell("project-1"),
    )
    row("pages/s, 2 nodes", "", rate_cell("scrapy-redis-2"), rate_cell("project-2"))
    if "project-recrawl-2" in results:
        recrawl = _ok(results, "project-recrawl-2")
        row("pages/s, 2 nodes, recrawl on", "", "", rate_cell("project-recrawl-2"))
        row(
            "  Redis bytes/page of recrawl state",
            "",
            "",
            _num(recrawl.recrawl_bytes if recrawl else None, ".0f"),
        )
    row(
        "1 node / plain Scrapy",
        "1.00x" if p1 else "",
        _num(_ratio(s1, p1), ".2f", "x"),
        _num(_ratio(o1, p1), ".2f", "x"),
        ">= 0.9x",
        _verdict(_ratio(o1, p1), 0.9),
    )
    row(
        "2 nodes / 1 node",
        "",
        _num(_ratio(s2, s1), ".2f", "x"),
        _num(_ratio(o2, o1), ".2f", "x"),
        ">= 1.6x",
        _verdict(_ratio(o2, o1), 1.6),
    )

    def wall(key: str) -> str:
        return _cell(results, key, lambda r: f"{r.wall:.1f}")

    row(
        "launch to exit s, 1 / 2 nodes",
        wall("plain-1"),
        f"{wall('scrapy-redis-1')} / {wall('scrapy-redis-2')}",
        f"{wall('project-1')} / {wall('project-2')}",
    )

    def fetched(key: str) -> str:
        return _cell(results, key, lambda r: f"{r.pages:,}/{r.fetches:,}")

    row(
        "pages / requests served, 1 / 2 nodes",
        fetched("plain-1"),
        f"{fetched('scrapy-redis-1')} / {fetched('scrapy-redis-2')}",
        f"{fetched('project-1')} / {fetched('project-2')}",
    )

    def foreign(key: str) -> str:
        return _cell(results, key, lambda r: f"{r.foreign_cpu:.2f}")

    row(
        "other processes' CPU cores, 1 / 2 nodes",
        foreign("plain-1"),
        f"{foreign('scrapy-redis-1')} / {foreign('scrapy-redis-2')}",
        f"{foreign('project-1')} / {foreign('project-2')}",
        "~0",
    )

    # Round trips per page.
    def per_page(key: str, attr: str) -> float | None:
        run = _ok(results, key)
        return None if run is None else run.per_page(getattr(run, attr))

    node_rt = [per_page(k, "node_roundtrips") for k in ("project-1", "project-2")]
    client_rt = [per_page(k, "client_roundtrips") for k in ("project-1", "project-2")]
    have_project = any(_ok(results, k) for k in ("project-1", "project-2"))
    rt_value = max((v for v in node_rt if v is not None), default=None)
    rt_target_on = "crawler/redis_roundtrips"
    if rt_value is None and have_project:
        rt_value = max((v for v in client_rt if v is not None), default=None)
        rt_target_on = "client-counted round trips"
        notes.append(
            "crawler/redis_roundtrips is absent from the nodes' stats: the round-trip "
            "target is judged on the client-counted round trips."
        )

    def pair(key1: str, key2: str, attr: str, fmt: str = ".2f") -> str:
        return f"{_num(per_page(key1, attr), fmt)} / {_num(per_page(key2, attr), fmt)}"

    row(
        "Redis round trips/page, 1 / 2 nodes: node stat",
        "",
        "",
        pair("project-1", "project-2", "node_roundtrips"),
        "<= 1" if rt_target_on.startswith("crawler") else "",
        _verdict(rt_value, 1, False) if rt_target_on.startswith("crawler") else "",
    )
    row(
        "  counted in redis-py (same for both)",
        "",
        pair("scrapy-redis-1", "scrapy-redis-2", "client_roundtrips"),
        pair("project-1", "project-2", "client_roundtrips"),
        "" if rt_target_on.startswith("crawler") else "<= 1",
        "" if rt_target_on.startswith("crawler") else _verdict(rt_value, 1, False),
    )
    row(
        "  Redis commands/page (commandstats)",
        "",
        pair("scrapy-redis-1", "scrapy-redis-2", "commands"),
        pair("project-1", "project-2", "commands"),
    )

    # Memory.
    exact, bloom = _ok(results, "seen-exact"), _ok(results, "seen-bloom")
    dupefilter = _ok(results, "dupefilter")
    row(
        f"bytes/seen URL, exact ({sizes.fingerprints:,})",
        "",
        _cell(results, "dupefilter", lambda v: f"{v:.1f} (dupefilter, {sizes.dupefilter:,})"),
        _cell(results, "seen-exact", lambda r: f"{r.per_url:.2f}"),
        "<= 16",
        _verdict(exact.per_url if exact else None, 16, False),
    )
    row(
        f"bytes/seen URL, bloom 1e-4 ({sizes.fingerprints:,})",
        "",
        "",
        _cell(results, "seen-bloom", lambda r: f"{r.per_url:.3f}"),
        "<= 2.5",
        _verdict(bloom.per_url if bloom else None, 2.5, False),
    )
    row(
        f"  bloom false positives ({sizes.probe:,} new URLs)",
        "",
        "",
        _cell(results, "seen-bloom", lambda r: f"{r.probe_duplicates} ({r.fp_rate:.1e})"),
        "1e-4 (Poisson 1%)",
        _fp_verdict(bloom.probe_duplicates, bloom.probe) if bloom and bloom.probe else "n/a",
    )
    row(
        f"bytes/queued request ({sizes.queue:,})",
        "",
        _cell(results, "queue", lambda r: f"{r.scrapy_redis:.0f} (pickle {r.scrapy_redis_entry})"),
        _cell(results, "queue", lambda r: f"{r.ours:.0f} (JSON {r.ours_entry})"),
    )
    if dupefilter and exact:
        notes.append(
            f"seen-set: {exact.per_url:.1f} B/URL exact vs {dupefilter:.1f} B/URL in "
            f"scrapy-redis's dupefilter ({dupefilter / exact.per_url:.0f}x less)."
        )

    # Commands.
    seed = _ok(results, "seed")
    small, big = seed if seed else (None, None)
    row(
        f"seed URLs/s ({sizes.seed:,} lines)",
        "",
        "",
        _cell(results, "seed", lambda s: _num(s[1].rate) + ("" if s[1].ok else " (errors)")),
        ">= 100,000",
        _verdict(big.rate if big and big.ok else None, 100_000),
    )
    flat = None
    if small and big and small.peak_mb and big.peak_mb:
        flat = big.peak_mb / small.peak_mb
    row(
        f"seed peak RSS MB ({sizes.seed // 10:,} / {sizes.seed:,} lines)",
        "",
        "",
        _cell(results, "seed", lambda s: f"{_num(s[0].peak_mb)} / {_num(s[1].peak_mb)}"),
        "flat (<= +20%)",
        _verdict(flat, 1.2, False),
    )
    export = _ok(results, "export")
    row(
        f"export items/s ({sizes.export:,} items)",
        "",
        "",
        _cell(results, "export", lambda e: _num(e.rate) + ("" if e.ok else " (count wrong)")),
        ">= 50,000",
        _verdict(export.rate if export and export.ok else None, 50_000),
    )

    _load_rows(results, row)
    _cluster_rows(results, row, notes)
    _broad_rows(results, row, notes, sizes)
    _broad_rows(results, row, notes, sizes, "broad-polite")

    disturbed = []
    for key in ("plain-1", "scrapy-redis-1", "scrapy-redis-2", "project-1", "project-2"):
        run = _ok(results, key)
        if run is not None and run.checks:
            notes.append(f"{key}: " + "; ".join(run.checks))
        if run is not None and run.foreign_cpu > _DISTURBED:
            disturbed.append(f"{key} ({run.foreign_cpu:.2f})")
    if small and big:
        for seed_run in (small, big):
            if seed_run.foreign_cpu > _DISTURBED:
                disturbed.append(f"seed {seed_run.lines:,} ({seed_run.foreign_cpu:.2f})")
    if export and export.foreign_cpu > _DISTURBED:
        disturbed.append(f"export ({export.foreign_cpu:.2f})")
    if disturbed:
        notes.append(
            "other processes on this machine used CPU during "
            + ", ".join(disturbed)
            + " (cores on average): those figures are low; rerun on an idle machine."
        )
    for key, value in results.items():
        if isinstance(value, Exception):
            notes.append(f"{key}: failed: {type(value).__name__}: {value}")
    if exact and exact.detail:
        notes.append(f"exact seen-set: {exact.detail}")
    if bloom and bloom.detail:
        notes.append(f"bloom seen-set: {bloom.detail}")

    header = ("metric", "plain Scrapy", "scrapy-redis", "this project", "target", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    lines = [
        f"Benchmarks (issue 4): {platform.node()}, {_cpus()} CPUs, Python "
        f"{platform.python_version()}, Scrapy {version('scrapy')}, scrapy-redis "
        f"{version('scrapy-redis')}, redis-py {version('redis')}, Redis "
        f"{results.get('redis_version', '(not started by the crawls)')}; {elapsed / 60:.1f} min; "
        f"load average {load:.2f} at the start",
        "",
    ]
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)]
        cells.append(r[5].ljust(widths[5]))
        lines.append("  ".join(cells).rstrip())
        if r is header:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"* {note}" for note in notes]
    return "\n".join(lines)


def _load_rows(results: dict[str, Any], row: Any) -> None:
    """The Redis load test: CPU per page by node count, and how flat it is."""
    load = _ok(results, "redis-load")
    if load is None and "redis-load" not in results:
        return
    nodes = " / ".join(str(r.shape.nodes) for r in load) if load else ""
    cpu = [r.us_per_page for r in load] if load else []
    row(
        f"Redis CPU µs/page, load test, {nodes} nodes",
        "",
        "",
        _cell(results, "redis-load", lambda rs: " / ".join(f"{r.us_per_page:.0f}" for r in rs)),
        "<= 25",
        _verdict(max(cpu) if cpu else None, 25, False),
    )
    row(
        "  most / least (flat as nodes are added)",
        "",
        "",
        _num(max(cpu) / min(cpu) if cpu else None, ".2f", "x"),
        "<= 1.25x",
        _verdict(max(cpu) / min(cpu) if cpu else None, 1.25, False),
    )
    row(
        "  pages/s (Python-bound here; Redis cores)",
        "",
        "",
        _cell(
            results,
            "redis-load",
            lambda rs: " / ".join(f"{r.rate / 1000:.0f}k ({r.cpu_s / r.wall_s:.2f})" for r in rs),
        ),
    )


def _cluster_rows(results: dict[str, Any], row: Any, notes: list[str]) -> None:
    """One Redis (P=1) against a 3-master cluster (P=3): CPU and capacity."""
    key = "redis-cluster-load"
    if key not in results:
        return
    cmp = _ok(results, key)
    n = cmp.shards if cmp else 3
    nodes = " / ".join(str(r.shape.nodes) for r in cmp.single) if cmp else ""
    split = _cell(results, key, lambda c: " / ".join(f"{r.us_per_page:.0f}" for r in c.split))
    control = _cell(results, key, lambda c: " / ".join(f"{r.us_per_page:.0f}" for r in c.servers))
    ratios = _cell(results, key, lambda c: " / ".join(f"{x:.2f}x" for x in c.ratios()))
    verdict = _verdict(cmp.ratio if cmp else None, 2.5)
    for metric, text in (
        (
            f"Redis µs/page, 1 Redis vs {n} shards (all), {nodes} nodes",
            _pairs(results, "us_per_page"),
        ),
        ("  busiest shard µs/page", _pairs(results, "busiest_us_per_page")),
        (f"  1 Redis with P={n} (the split alone) µs/page", split),
        (f"  {n} standalone Redis, P=1 each (control: {n} servers alone) µs/page", control),
        ("  pages/s measured (Python-bound here)", _pairs(results, "rate", ",.0f")),
        ("  capacity pages/s, one core per shard", _pairs(results, "capacity", ",.0f")),
    ):
        row(metric, "", "", text)
    row(f"  capacity {n} shards / 1 Redis", "", "", ratios, ">= 2.5x", verdict)
    if cmp and cmp.single[0].wakes:
        saturated = " / ".join(f"{x:.2f}x" for x in cmp.saturated_ratios())
        row(f"  the same without wakes ({cmp.wake_us:.0f} µs each here)", "", "", saturated)
    row("  bytes/queued request, 1 Redis vs shards", "", "", _pairs(results, "queue_bytes"))
    if cmp:
        from tests.benchmarks.bench_cluster_load import WHY

        notes.append(f"Redis Cluster: {WHY}")


def _broad_rows(
    results: dict[str, Any], row: Any, notes: list[str], sizes: Sizes, part: str = "broad"
) -> None:
    """The slow broad crawl (*part* broad-polite: with DOWNLOAD_DELAY): Redis
    CPU per page, scrapy-redis against this project."""
    if part not in results:
        return
    runs = _ok(results, part)
    hosts, pages = sizes.broad if part == "broad" else sizes.broad_polite

    def cell(key: str, text: Any) -> str:
        run = runs.get(key) if runs else None
        if run is None:
            return _cell(results, part, str)
        return text(run) + ("" if run.complete else " (incomplete)")

    def us(run: Any) -> float | None:
        return run.per_page(run.redis_cpu * 1e6) if run.complete else None

    from tests.benchmarks.bench_broad import LATENCY

    label = f"slow broad crawl, 2 nodes ({hosts} hosts x {pages} pages, {LATENCY} s each"
    label += f", DOWNLOAD_DELAY={POLITE_DELAY})" if part == "broad-polite" else ")"
    row(
        f"pages/s, {label}",
        "",
        cell("scrapy-redis", lambda r: _num(r.rate)),
        cell("project", lambda r: _num(r.rate)),
    )
    ours = us(runs["project"]) if runs and "project" in runs else None
    theirs = us(runs["scrapy-redis"]) if runs and "scrapy-redis" in runs else None
    row(
        "  Redis CPU µs/page (idle time included)",
        "",
        cell("scrapy-redis", lambda r: _num(us(r), ".0f")),
        cell("project", lambda r: _num(us(r), ".0f")),
        "< scrapy-redis",
        "PASS" if ours and theirs and ours < theirs else ("FAIL" if ours and theirs else ""),
    )
    row(
        "  ... with CRAWLER_COMMIT_WAIT=0 (a commit per flush)",
        "",
        "",
        cell("project-nowait", lambda r: _num(us(r), ".0f")),
    )
    row(
        "  Redis commands/page (a script's own commands included)",
        "",
        cell("scrapy-redis", lambda r: _num(r.per_page(r.calls), ".1f")),
        cell("project", lambda r: _num(r.per_page(r.calls), ".1f")),
    )
    if runs:
        for key, run in runs.items():
            if run.checks:
                notes.append(f"{part} {key}: " + "; ".join(run.checks))


def _pairs(results: dict[str, Any], attr: str, fmt: str = ".0f") -> str:
    """The cluster comparison's *attr*, single vs cluster, per node count."""

    def text(c: Any) -> str:
        pairs = zip(c.single, c.cluster, strict=True)
        return " / ".join(f"{getattr(a, attr):{fmt}} vs {getattr(b, attr):{fmt}}" for a, b in pairs)

    return _cell(results, "redis-cluster-load", text)


def _cpus() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
