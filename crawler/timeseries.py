"""A compact, bounded time series each node writes for ``scrapy dashboard``.

Keys (under the crawl's hash tag, beside those of ``crawler.keys``)::

    {NAME}:ts:<node>   LIST   samples of one node, oldest first, each
                              "<unix s.d>,<pages>,<items>,<queued>,<dead>":
                              the node's pages and items stored and dead
                              letters so far, and the frontier's size as the
                              node last read it. Trimmed to the newest
                              CRAWLER_DASHBOARD_HISTORY_HOURS worth of
                              samples, and expiring that long after the
                              node's last sample, so memory stays bounded
                              however long a crawl runs or how many nodes
                              came and went.

A node adds a sample with its heartbeat (``crawler.nodereport``) once every
``CRAWLER_DASHBOARD_SAMPLE_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawler.keys import Keys
from crawler.redis_errors import is_transient
from crawler.scheduler import redis_scheduler

logger = logging.getLogger(__name__)

FIELDS = ("pages", "items", "queued", "dead")


def series_key(keys: Keys, node: str) -> str:
    return keys.series(node)


@dataclass(frozen=True)
class Sample:
    time: float
    pages: int
    items: int
    queued: int
    dead: int

    def encode(self) -> str:
        return f"{self.time:.1f},{self.pages},{self.items},{self.queued},{self.dead}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Sample | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        t, *rest = text.split(",")
        try:
            values = [int(v) for v in rest]
            return cls(float(t), *values) if len(values) == len(FIELDS) else None
        except ValueError:
            return None


def read_series(client: Any, keys: Keys, node: str) -> list[Sample]:
    """The samples of *node*, oldest first (unreadable ones skipped)."""
    samples = (Sample.decode(raw) for raw in client.lrange(series_key(keys, node), 0, -1))
    return [s for s in samples if s is not None]


class TimeSeries:
    """Extension: adds a sample of this node to its series with the heartbeat."""

    def __init__(self, crawler: Crawler, interval: float, hours: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self.keep = max(2, int(hours * 3600 / interval))
        self.ttl_ms = max(1000, int(hours * 3600 * 1000))
        self._last = 0.0
        self._warned = False
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TimeSeries:
        interval = crawler.settings.getfloat("CRAWLER_DASHBOARD_SAMPLE_INTERVAL")
        hours = crawler.settings.getfloat("CRAWLER_DASHBOARD_HISTORY_HOURS")
        if interval <= 0 or hours <= 0:
            raise NotConfigured("CRAWLER_DASHBOARD_SAMPLE_INTERVAL or _HISTORY_HOURS is 0")
        return cls(crawler, interval, hours)

    def spider_opened(self, spider: Any) -> None:
        scheduler = redis_scheduler(self.crawler)
        if scheduler is not None and scheduler.worker is not None:
            scheduler.worker.report.sampler = self.sample

    async def sample(self) -> None:
        """Add a sample if the interval passed; a transient Redis error goes
        to the heartbeat's retries, a refusal (ACL) is logged once."""
        now = time.time()
        scheduler = redis_scheduler(self.crawler)
        # Heartbeats come about every interval: a little early is on time.
        due = now - self._last >= self.interval * 0.8
        if not due or scheduler is None or scheduler.worker is None:
            return
        worker = scheduler.worker
        stats = worker.report.stats
        sample = Sample(
            now,
            int(stats.get_value("crawler/acked", 0)),
            int(stats.get_value("crawler/items_stored", 0)),
            int(worker.queued),
            int(stats.get_value("crawler/dead_lettered", 0)),
        )
        key = series_key(worker.frontier.keys, worker.frontier.node)
        try:
            await self._write(worker.frontier.client, key, sample)
        except redis.RedisError as exc:
            if is_transient(exc):
                raise
            if not self._warned:
                logger.warning("Could not write the dashboard's time series %s: %s", key, exc)
                self._warned = True
        self._last = now

    async def _write(self, client: Any, key: str, sample: Sample) -> None:
        # One key: a crash between the calls leaves a sample too many, trimmed next time.
        pipe = client.pipeline(transaction=False)
        pipe.rpush(key, sample.encode())
        pipe.ltrim(key, -self.keep, -1)
        pipe.pexpire(key, self.ttl_ms)
        await pipe.execute()
