"""A slow broad crawl: Redis's CPU per page when pages come slowly.

The crawl benchmark (``bench_crawls``) fetches one fast nginx site, where a
node finishes many pages between two commits. A crawl of the web is the
other way round: many sites, each answering in a fraction of a second, so a
node finishes a page or two between two flushes, and every Redis call costs
its fixed part for those few pages (``COSTS.md``, section 6).

Here ``HOSTS`` sites on their own loopback addresses (``tests.hosts``,
each a tree of ``PAGES`` pages answering after ``LATENCY`` seconds) are
crawled to the end by 2 nodes of the ``site`` spider, each run on a fresh
redis-server:

* scrapy-redis 0.9 (its scheduler and dupefilter);
* this project with ``CRAWLER_COMMIT_WAIT=0`` (a commit at every flush, as
  before the setting existed);
* this project as configured.

Per run: pages fetched (by the servers), duplicates, pages/s, Redis CPU
(``used_cpu_user + used_cpu_sys`` over the run, idle time included) per
page, and Redis calls per page.

    .venv/bin/python -m tests.benchmarks.bench_broad
    .venv/bin/python -m tests.benchmarks.bench_broad --delay 1 --pages 20
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.bench_util import (
    ROOT,
    SCRAPY,
    RedisServer,
    progress,
    scrapy_env,
    start_scrapy,
    wait_all,
)
from tests.hosts import HostSite, loopback_available

HOSTS = 40
PAGES = 60
LATENCY = 0.3
NODES = 2
FIRST_HOST = 60  # 127.0.0.60, 127.0.0.61, ...
COMMON = {
    "LOG_LEVEL": "INFO",
    "CONCURRENT_REQUESTS": "16",
    "ROBOTSTXT_OBEY": "True",
    "TELNETCONSOLE_ENABLED": "False",
    "HTTPCACHE_ENABLED": "False",
}
_TIMEOUT = 600.0


@dataclass
class BroadResult:
    label: str
    expected: int
    pages: int = 0
    fetches: int = 0
    seconds: float = 0.0  # first fetch to last
    redis_cpu: float = 0.0  # seconds
    calls: int = 0  # commands Redis ran (a script's and the commands it runs)
    scripts: int = 0  # EVALSHA calls
    checks: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.pages / self.seconds if self.seconds > 0 else None

    def per_page(self, value: float) -> float | None:
        return value / self.pages if self.pages else None

    @property
    def complete(self) -> bool:
        return not self.checks


def hosts(count: int = HOSTS) -> list[str]:
    return [f"127.0.0.{FIRST_HOST + i}" for i in range(count)]


def available(count: int = HOSTS) -> bool:
    return all(loopback_available(h) for h in (hosts(count)[0], hosts(count)[-1]))


def _cpu(redis: RedisServer) -> float:
    info = redis.client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _calls(redis: RedisServer) -> tuple[int, int]:
    """(commands, EVALSHA calls) so far; the commands a script runs count."""
    stats = redis.client().info("commandstats")
    scripts = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return sum(int(v["calls"]) for v in stats.values()), scripts


def _seed(urls: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [SCRAPY, "seed", "site", *urls], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scrapy seed failed: {done.stderr[-2000:]}")


def _one(
    label: str,
    run: str,
    work: Path,
    settings: dict[str, str],
    count: int,
    pages: int,
    delay: float = 0.0,
) -> BroadResult:
    """Crawl *count* sites of *pages* pages to the end with 2 nodes;
    scrapy-redis when *settings* name its scheduler; *delay* is every
    run's DOWNLOAD_DELAY."""
    result = BroadResult(label, count * pages)
    if delay:
        settings = {**settings, "DOWNLOAD_DELAY": str(delay)}
    scrapy_redis = "scrapy_redis" in settings.get("SCHEDULER", "")
    sites = [HostSite(host, pages, latency=LATENCY) for host in hosts(count)]
    redis = RedisServer(work / f"redis-{run}").start()
    try:
        env = scrapy_env(REDIS_URL=redis.url)
        seeds = [site.url("/page/0.html") for site in sites]
        args = ["crawl", "site"]
        if scrapy_redis:
            settings = {**settings, "REDIS_URL": redis.url}  # a setting, not the environment
        for name, value in {**COMMON, **settings}.items():
            args += ["-s", f"{name}={value}"]
        progress(f"broad crawl: {label}, {NODES} nodes, {count} hosts x {pages} pages")
        if not scrapy_redis:
            _seed(seeds, env)
        cpu0, (calls0, scripts0) = _cpu(redis), _calls(redis)
        if scrapy_redis:
            # A plain spider on scrapy-redis closes once it finds the shared
            # queue empty: the second node starts once the first queued pages.
            start = [*args, "-a", f"start_url={' '.join(seeds)}"]
            first = start_scrapy(start, work / f"{run}-1.log", env)
            client = redis.client()
            deadline = time.monotonic() + 60
            while client.zcard("site:requests") < 64 and time.monotonic() < deadline:
                time.sleep(0.01)
            procs = [first, start_scrapy(args, work / f"{run}-2.log", env)]
        else:
            procs = [start_scrapy(args, work / f"{run}-{n}.log", env) for n in (1, 2)]
        wait_all(procs, _TIMEOUT)
        result.redis_cpu = _cpu(redis) - cpu0
        calls1, scripts1 = _calls(redis)
        result.scripts = scripts1 - scripts0
        result.calls = calls1 - calls0
        hits = [(site.host, h) for site in sites for h in site.page_hits()]
        fetched = Counter(f"{host}{h.path}" for host, h in hits if h.status == 200)
        result.pages = len(fetched)
        result.fetches = sum(fetched.values())
        if hits:
            times = [h.arrived for _, h in hits]
            result.seconds = max(times) - min(times)
        if result.pages != result.expected:
            result.checks.append(f"fetched {result.pages} of {result.expected} pages")
        for n in (1, 2):
            text = (work / f"{run}-{n}.log").read_text(errors="replace")
            if "Traceback" in text or "] ERROR:" in text:
                result.checks.append(f"node {n} logged errors ({run}-{n}.log)")
        us = result.per_page(result.redis_cpu * 1e6) or 0
        progress(
            f"  {result.pages:,} pages, {result.fetches - result.pages} fetched again, "
            f"{result.rate or 0:.0f} pages/s, Redis {us:.0f} µs/page, "
            f"{result.per_page(result.scripts) or 0:.2f} script calls/page"
        )
    finally:
        redis.stop()
        for site in sites:
            site.close()
    return result


#: (key, label, settings) of each run, in order.
RUNS = (
    (
        "scrapy-redis",
        "scrapy-redis",
        {
            "ADDONS": "{}",
            "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
            "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
            "SCHEDULER_PERSIST": "True",
            "ITEM_PIPELINES": "{}",
        },
    ),
    ("project-nowait", "this project, CRAWLER_COMMIT_WAIT=0", {"CRAWLER_COMMIT_WAIT": "0"}),
    ("project", "this project", {}),
)


def run(
    work: Path, count: int = HOSTS, pages: int = PAGES, delay: float = 0.0
) -> dict[str, BroadResult]:
    """Every run of ``RUNS``, one after the other."""
    if not available(count):
        raise RuntimeError(f"needs loopback addresses {hosts(count)[0]} to {hosts(count)[-1]}")
    return {key: _one(label, key, work, cfg, count, pages, delay) for key, label, cfg in RUNS}


def main() -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_broad")
    parser.add_argument("--hosts", type=int, default=HOSTS)
    parser.add_argument("--pages", type=int, default=PAGES, help="pages per host")
    parser.add_argument("--delay", type=float, default=0.0, help="DOWNLOAD_DELAY of every run")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crawler-broad-"))
    results = run(work, opts.hosts, opts.pages, opts.delay)
    head = ("run", "pages", "again", "pages/s", "Redis µs/page", "calls/page")
    row = "{:40} {:>6} {:>6} {:>8} {:>14} {:>11}"
    print(row.format(*head))
    for r in results.values():
        us = r.per_page(r.redis_cpu * 1e6) or 0
        calls = r.per_page(r.calls) or 0
        again = r.fetches - r.pages
        rate = f"{r.rate or 0:.0f}"
        print(row.format(r.label, r.pages, again, rate, f"{us:.0f}", f"{calls:.2f}"))
        for check in r.checks:
            print(f"  ! {check}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
