"""What a node tells the cluster about itself: its entry in ``{N}:nodeinfo``
(host, pid, state, rates per minute) and its Scrapy stats, summed into the
crawl's ``{N}:clusterstats``."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable

from scrapy.statscollectors import StatsCollector

from crawler.partfrontier import AnyFrontier

#: Prefix of a stat sent as a value the cluster keeps the highest of.
MAX_MARK = "M"


def is_max_stat(name: str) -> bool:
    """Whether Scrapy keeps stat *name* with ``max_value`` (the deepest
    request, ``request_depth_max``; the peak memory, ``memusage/max``)."""
    return name.endswith(("_max", "/max"))


class NodeReport:
    def __init__(self, frontier: AnyFrontier, stats: StatsCollector, lease_ms: int) -> None:
        self.frontier = frontier
        self.stats = stats
        self.lease_ms = lease_ms
        self._started = time.time()
        self._samples: deque[tuple[float, int, int]] = deque()
        self._sent_stats: dict[str, int | float] = {}
        self._roundtrips = 0
        # Adds a sample to the dashboard's time series (crawler.timeseries).
        self.sampler: Callable[[], Awaitable[None]] | None = None

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.stats.inc_value(key, n)

    def count_roundtrips(self) -> None:
        done = self.frontier.roundtrips
        self.count("crawler/redis_roundtrips", done - self._roundtrips)
        self._roundtrips = done

    def describe(self, state: str) -> str:
        """This node's entry in ``{N}:nodeinfo``, with its rates per minute."""
        now = time.monotonic()
        pages = self.stats.get_value("crawler/acked", 0)
        items = self.stats.get_value("crawler/items_stored", 0)
        self._samples.append((now, pages, items))
        while len(self._samples) > 2 and now - self._samples[1][0] >= 60:
            self._samples.popleft()
        then, pages0, items0 = self._samples[0]
        minutes = max((now - then) / 60, 1e-9)
        rate = (pages - pages0) / minutes if now > then else 0.0
        item_rate = (items - items0) / minutes if now > then else 0.0
        return json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": self._started,
                "state": state,
                "lease_ms": self.lease_ms,
                "pages": pages,
                "items": items,
                "pages_per_min": round(rate, 1),
                "items_per_min": round(item_rate, 1),
            }
        )

    async def push_stats(self) -> None:
        """Add what this node's Scrapy stats gained since last time to the cluster's."""
        deltas: dict[str, int | float | str] = {}
        sent: dict[str, int | float] = {}  # what the cluster has of each, once added
        for name, value in self.stats.get_stats().items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if is_max_stat(name):
                # A highest value (Scrapy's max_value): the cluster's is the
                # highest of the nodes', not their sum.
                if value != self._sent_stats.get(name):
                    deltas[name] = f"{MAX_MARK}{value}"
                    sent[name] = value
                continue
            delta = value - self._sent_stats.get(name, 0)
            if delta:
                deltas[name] = delta
                sent[name] = value
        await self.frontier.add_stats(deltas)
        self._sent_stats.update(sent)
        if self.sampler is not None:
            await self.sampler()

    async def leave(self) -> None:
        """Final heartbeat: this node leaves the crawl on purpose."""
        self.count_roundtrips()
        await self.push_stats()
        await self.frontier.heartbeat(0, self.describe("left"))
