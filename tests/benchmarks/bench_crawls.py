"""Crawl the nginx site to the end with each crawler, as real ``scrapy crawl``
processes running the project's ``site`` spider, and measure each run.

* plain Scrapy: the add-on off (``ADDONS={}``), Scrapy's own memory scheduler;
* scrapy-redis 0.9: the add-on off, its scheduler and dupefilter, with
  ``SCHEDULER_PERSIST=True`` (otherwise the first node to close deletes the
  queue and the seen-set under the others);
* this project: the project's settings as they are (the add-on on).

Every run gets the same Scrapy settings (``COMMON``) and a jsonl feed per
node. Throughput is measured by the server: nginx logs the time of every
request, and pages/s is the number of distinct pages fetched divided by the
time from the first fetch to the last. The time from launching the first
node to the last node's exit is reported too: it adds Scrapy's start-up and
each crawler's way of ending (this project's nodes wait
``CRAWLER_FINISH_GRACE`` before they exit).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.bench_site import Nginx
from tests.benchmarks.bench_util import (
    ROOT,
    SCRAPY,
    ForeignLoad,
    RedisServer,
    command_delta,
    count_lines,
    log_stat,
    progress,
    scrapy_env,
    start_scrapy,
    wait_all,
)

COMMON: dict[str, str] = {
    "LOG_LEVEL": "INFO",
    "CONCURRENT_REQUESTS": "32",
    # All pages are on one host: without this Scrapy's per-domain limit (8)
    # would cap every crawler below CONCURRENT_REQUESTS. High enough that no
    # crawler is capped by it: plain Scrapy and scrapy-redis apply it per
    # process, this project to the whole cluster, counting the requests
    # nodes have leased ahead (CRAWLER_PREFETCH) as well as those in flight.
    "CONCURRENT_REQUESTS_PER_DOMAIN": "1000",
    # Scrapy 2.19 starts CONCURRENT_ITEMS asyncio tasks for every response's
    # output; the default, 100, costs this benchmark ~40% of plain Scrapy's
    # throughput (a page here yields 6 objects). Same value for every crawler.
    "CONCURRENT_ITEMS": "16",
    "ROBOTSTXT_OBEY": "False",
    "TELNETCONSOLE_ENABLED": "False",
    "HTTPCACHE_ENABLED": "False",
    "EXTENSIONS": json.dumps({"tests.benchmarks.bench_roundtrips.RoundTripCounter": 0}),
}

# Seconds a crawl may take before it is killed and reported as failed.
_CRAWL_TIMEOUT_PER_PAGE = 0.05
_CRAWL_TIMEOUT_MIN = 120.0
# scrapy-redis: start the second node once the shared queue holds this much.
_SECOND_NODE_QUEUE = 64


@dataclass
class CrawlResult:
    label: str
    nodes: int
    expected: int
    pages: int = 0  # distinct pages fetched (HTTP 200), by nginx's log
    fetches: int = 0  # all requests nginx served during the run
    window: float = 0.0  # first fetch to last fetch (s)
    wall: float = 0.0  # launch of the first node to exit of the last (s)
    items: int = 0  # lines in the nodes' jsonl feeds
    responses: int = 0  # response_received_count summed over nodes
    client_roundtrips: int | None = None  # bench/redis_roundtrips, summed
    node_roundtrips: int | None = None  # crawler/redis_roundtrips (this project)
    commands: int | None = None  # INFO commandstats calls during the run
    command_breakdown: dict[str, int] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)  # problems found
    foreign_cpu: float = 0.0  # cores used by other processes on the machine meanwhile
    recrawl_bytes: float | None = None  # Redis bytes per page of recrawl state ({N}:due)

    @property
    def rate(self) -> float | None:
        if self.pages < 2 or self.window <= 0:
            return None
        return self.pages / self.window

    @property
    def complete(self) -> bool:
        return self.pages == self.expected and not self.checks

    def per_page(self, value: int | None) -> float | None:
        return None if value is None or not self.pages else value / self.pages


def _settings_args(settings: dict[str, str]) -> list[str]:
    args: list[str] = []
    for name, value in settings.items():
        args += ["-s", f"{name}={value}"]
    return args


class CrawlBench:
    def __init__(self, site: Nginx, pages: int, redis: RedisServer, work: Path) -> None:
        self.site = site
        self.pages = pages
        self.redis = redis
        self.work = work
        self.timeout = max(_CRAWL_TIMEOUT_MIN, pages * _CRAWL_TIMEOUT_PER_PAGE)
        self.start_url = f"{site.base}/page/0.html"

    def _node_args(self, run: str, node: int, settings: dict[str, str], seed: bool) -> list[str]:
        feed = self.work / f"{run}-node{node}.jsonl"
        args = ["crawl", "site", "-O", str(feed)]
        if seed:
            args += ["-a", f"start_url={self.start_url}"]
        return args + _settings_args({**COMMON, **settings})

    def _launch(
        self, run: str, node: int, settings: dict[str, str], seed: bool, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = self.work / f"{run}-node{node}.log"
        return start_scrapy(self._node_args(run, node, settings, seed), log, env)

    def _finish(
        self, result: CrawlResult, run: str, mark: int, t0: float, t_end: float
    ) -> list[str]:
        """Fill in what nginx, the feeds and the logs say; return the logs."""
        fetches = [f for f in self.site.fetches(mark) if f.time >= t0 - 1]
        ok = [f for f in fetches if f.status == 200 and f.uri.startswith("/page/")]
        result.fetches = len(fetches)
        result.pages = len({f.uri for f in ok})
        if ok:
            result.window = max(f.time for f in ok) - min(f.time for f in ok)
        result.wall = t_end - t0
        logs = []
        for node in range(1, result.nodes + 1):
            result.items += count_lines(self.work / f"{run}-node{node}.jsonl")
            logs.append((self.work / f"{run}-node{node}.log").read_text(errors="replace"))
        result.responses = int(sum(log_stat(text, "response_received_count") or 0 for text in logs))
        counted = [log_stat(text, "bench/redis_roundtrips") for text in logs]
        if all(c is not None for c in counted):
            result.client_roundtrips = int(sum(c or 0 for c in counted))
        for node, text in enumerate(logs, 1):
            if "Traceback" in text or "] ERROR:" in text:
                result.checks.append(f"node {node} logged errors (see {run}-node{node}.log)")
            if "Dumping Scrapy stats" not in text:
                result.checks.append(f"node {node} did not finish (see {run}-node{node}.log)")
        if result.pages != self.pages:
            result.checks.append(f"fetched {result.pages} of {self.pages} pages")
        if result.items < self.pages:
            result.checks.append(f"only {result.items} items in the feeds")
        return logs

    # -- the crawlers ---------------------------------------------------------

    def plain(self) -> CrawlResult:
        run = "plain-1"
        result = CrawlResult("plain Scrapy", 1, self.pages)
        settings = {
            "ADDONS": "{}",
            "SCHEDULER": "scrapy.core.scheduler.Scheduler",
            "ITEM_PIPELINES": "{}",
        }
        progress(f"crawl: plain Scrapy, 1 node, {self.pages:,} pages")
        mark, t0, load = self.site.mark(), time.time(), ForeignLoad()
        proc = self._launch(run, 1, settings, True, scrapy_env())
        t_end = wait_all([proc], self.timeout)
        result.foreign_cpu = load.cores()
        (log,) = self._finish(result, run, mark, t0, t_end)
        if log_stat(log, "scheduler/enqueued/memory") is None:
            result.checks.append("Scrapy's memory scheduler was not used")
        if "crawler.scheduler" in log:
            result.checks.append("the project's scheduler was used")
        return _done(result)

    def scrapy_redis(self, nodes: int) -> CrawlResult:
        run = f"scrapy-redis-{nodes}"
        result = CrawlResult("scrapy-redis", nodes, self.pages)
        settings = {
            "ADDONS": "{}",
            "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
            "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
            "REDIS_URL": self.redis.url,
            "SCHEDULER_PERSIST": "True",
            "ITEM_PIPELINES": "{}",
        }
        client = self.redis.client()
        client.flushall()
        progress(f"crawl: scrapy-redis, {nodes} node(s), {self.pages:,} pages")
        before = self.redis.commandstats()
        polls = 0
        mark, t0, load = self.site.mark(), time.time(), ForeignLoad()
        procs = [self._launch(run, 1, settings, True, scrapy_env())]
        if nodes > 1:
            # A plain spider on scrapy-redis closes as soon as it finds the
            # shared queue empty, so the other nodes start (without a start
            # URL) once node 1 has filled the queue.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and procs[0].poll() is None:
                polls += 1
                if client.zcard("site:requests") >= _SECOND_NODE_QUEUE:
                    break
                time.sleep(0.01)
            progress(f"  starting {nodes - 1} more node(s) after {time.time() - t0:.1f}s")
            for node in range(2, nodes + 1):
                procs.append(self._launch(run, node, settings, False, scrapy_env()))
        t_end = wait_all(procs, self.timeout)
        result.foreign_cpu = load.cores()
        delta = command_delta(before, self.redis.commandstats())
        delta["zcard"] = delta.get("zcard", 0) - polls
        result.command_breakdown = {k: v for k, v in delta.items() if v}
        result.commands = sum(result.command_breakdown.values())
        logs = self._finish(result, run, mark, t0, t_end)
        for node, log in enumerate(logs, 1):
            # crawler/commits: the framework's scheduler, which records
            # scheduler/enqueued/redis too.
            ours = log_stat(log, "crawler/commits") is not None
            if (log_stat(log, "scheduler/enqueued/redis") is None or ours) and node == 1:
                result.checks.append("scrapy-redis's scheduler was not used")
        return _done(result)

    def project(self, nodes: int, recrawl: bool = False) -> CrawlResult:
        """With *recrawl*, every page is written back as due again in a day
        (CRAWLER_RECRAWL_AFTER): the nodes stay up, and are stopped with
        SIGTERM once every page was fetched."""
        run = f"project{'-recrawl' if recrawl else ''}-{nodes}"
        result = CrawlResult("this project", nodes, self.pages)
        name = f"bench-{nodes}node-{int(time.time())}"
        settings = {"CRAWLER_CRAWL_NAME": name}
        if recrawl:
            settings["CRAWLER_RECRAWL_AFTER"] = "86400"
        self.redis.client().flushall()
        progress(f"crawl: this project, {nodes} node(s), {self.pages:,} pages")
        env = scrapy_env(REDIS_URL=self.redis.url)
        before = self.redis.commandstats()
        mark, t0, load = self.site.mark(), time.time(), ForeignLoad()
        # Every node starts the spider with the same start URL: the shared
        # seen-set lets one of them fetch it.
        procs = [self._launch(run, node, settings, True, env) for node in range(1, nodes + 1)]
        if recrawl:
            self._stop_when_fetched(procs, mark, t0)
        t_end = wait_all(procs, self.timeout)
        result.foreign_cpu = load.cores()
        if recrawl:
            result.recrawl_bytes = self._recrawl_bytes(name)
        delta = command_delta(before, self.redis.commandstats())
        result.command_breakdown = delta
        result.commands = sum(delta.values())
        logs = self._finish(result, run, mark, t0, t_end)
        for node, log in enumerate(logs, 1):
            if "joined crawl" not in log:
                result.checks.append(f"node {node}: the project's scheduler was not used")
        result.node_roundtrips = self._cluster_roundtrips(name, env, logs)
        return _done(result)

    def _stop_when_fetched(
        self, procs: list[subprocess.Popen[bytes]], mark: int, t0: float
    ) -> None:
        """SIGTERM the nodes once nginx served every page (or after the timeout)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            fetched = {
                f.uri
                for f in self.site.fetches(mark)
                if f.time >= t0 - 1 and f.status == 200 and f.uri.startswith("/page/")
            }
            if len(fetched) >= self.pages:
                break
            time.sleep(0.5)
        time.sleep(2)  # the last pages' commits
        for proc in procs:
            proc.send_signal(signal.SIGTERM)

    def _recrawl_bytes(self, name: str) -> float | None:
        """Redis bytes per page due again: the due set, requests and times."""
        client = self.redis.client()
        due = client.zcard(f"{{{name}}}:due")
        used = int(client.memory_usage(f"{{{name}}}:due", samples=0) or 0)
        progress(f"  recrawl state: {due:,} pages due again, {used / max(due, 1):.0f} bytes/page")
        return used / due if due else None

    def _cluster_roundtrips(self, name: str, env: dict[str, str], logs: list[str]) -> int | None:
        """``crawler/redis_roundtrips`` summed over the nodes, from
        ``scrapy status --stats --json``; from the nodes' logs if that fails."""
        cmd = ["status", "site", "--stats", "--json", "-s", f"CRAWLER_CRAWL_NAME={name}"]
        out = subprocess.run(
            [SCRAPY, *cmd], env=env, capture_output=True, text=True, cwd=ROOT, check=False
        )
        try:
            value = json.loads(out.stdout).get("crawler/redis_roundtrips")
            if value is not None:
                return int(value)
        except ValueError:
            pass
        found = [log_stat(text, "crawler/redis_roundtrips") for text in logs]
        if all(v is not None for v in found):
            return int(sum(v or 0 for v in found))
        return None


def _done(result: CrawlResult) -> CrawlResult:
    rate = f"{result.rate:,.0f} pages/s" if result.rate else "no rate"
    state = "ok" if result.complete else "; ".join(result.checks)
    progress(
        f"  {result.pages:,} pages in {result.window:.1f}s ({rate}), "
        f"{result.wall:.1f}s launch to exit, {result.fetches:,} requests served: {state}"
        f" (other processes used {result.foreign_cpu:.2f} CPU cores meanwhile)"
    )
    return result
