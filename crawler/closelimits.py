"""Scrapy's CLOSESPIDER_ITEMCOUNT, CLOSESPIDER_ERRORCOUNT and
CLOSESPIDER_TIMEOUT, meaning the whole cluster's totals.

Scrapy's CloseSpider extension counts what one process saw: on a fleet of N
nodes each would scrape its own CLOSESPIDER_ITEMCOUNT items (N times the
limit in all) and time out N times over as nodes join late. Here:

* items and errors are the cluster's sums of Scrapy's own counters
  (``item_scraped_count``, ``spider_exceptions/count``), which every node
  adds to ``{N}:clusterstats``; each node reads the sums back and closes
  once one reaches its limit;
* the timeout runs from the start of the earliest node still in the crawl,
  so a node that joins late closes with the others.

Every node closes with Scrapy's reason (``closespider_itemcount``, …). What
was in progress then finishes, as with Scrapy's extension, so the totals
end a little past the limit: by what the nodes scrape in about a second
(with a counted limit set, a node adds its stats and reads the totals every
second, not only with its heartbeat). CLOSESPIDER_PAGECOUNT is exact and is
counted by the frontier (``crawler/lua/_polite.lua``). Scrapy's extension
keeps running on each node; its own counts never run ahead of the
cluster's, so it closes a node no sooner.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from scrapy.settings import BaseSettings

#: Seconds between checks of the counted limits (and pushes of the stats).
_CHECK_EVERY = 1.0

#: (Scrapy's stats counter, setting, Scrapy's close reason)
_COUNTED = (
    ("item_scraped_count", "CLOSESPIDER_ITEMCOUNT", "closespider_itemcount"),
    ("spider_exceptions/count", "CLOSESPIDER_ERRORCOUNT", "closespider_errorcount"),
)


@dataclass(frozen=True)
class CloseLimits:
    """The cluster-wide CLOSESPIDER_* limits set (0: none)."""

    counts: tuple[tuple[str, int, str, str], ...] = ()  # (stat, limit, setting, reason)
    timeout: float = 0.0

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> CloseLimits:
        counts = tuple(
            (stat, settings.getint(name), name, reason)
            for stat, name, reason in _COUNTED
            if settings.getint(name) > 0
        )
        return cls(counts, max(settings.getfloat("CLOSESPIDER_TIMEOUT"), 0.0))


class ClusterLimits:
    """Whether the cluster reached one of its CLOSESPIDER_* limits."""

    def __init__(self, frontier: Any, limits: CloseLimits, lease_ms: int) -> None:
        self.frontier = frontier
        self.limits = limits
        self.lease_ms = lease_ms
        self.deadline = 0.0  # time.time() at which the crawl times out (0: never)
        self._checked = 0.0

    async def start(self) -> None:
        """Fix the timeout's deadline from the earliest live node's start."""
        if self.limits.timeout > 0:
            started = await self.frontier.run_started(self.lease_ms)
            self.deadline = min(started, time.time()) + self.limits.timeout

    def due(self, now: float) -> bool:
        """Whether the counted limits should be checked now (*now*:
        time.monotonic()): every _CHECK_EVERY seconds when any is set, so
        the totals end past a limit by about a second of scraping, not a
        heartbeat's worth."""
        if not self.limits.counts or now - self._checked < _CHECK_EVERY:
            return False
        self._checked = now
        return True

    def timed_out(self) -> str | None:
        if self.deadline and time.time() >= self.deadline:
            return f"the crawl ran for CLOSESPIDER_TIMEOUT={self.limits.timeout:g}s"
        return None

    async def reached(self) -> tuple[str, str] | None:
        """(Scrapy's close reason, why) once a counted limit is reached by
        the cluster's totals (read after this node added its own)."""
        if not self.limits.counts:
            return None
        totals = await self.frontier.cluster_stats([stat for stat, *_ in self.limits.counts])
        for (stat, limit, name, reason), total in zip(self.limits.counts, totals, strict=True):
            if total >= limit:
                return reason, f"the cluster's {stat} is {total} ({name}={limit})"
        return None


def earliest_live_start(infos: dict[Any, Any], beats: dict[Any, Any], lease_ms: int) -> float:
    """The earliest start (time.time()) of the nodes whose last heartbeat is
    within a lease of the latest one, as ``{N}:nodeinfo`` and ``{N}:nodebeat``
    hold them; 0.0 when there is none."""
    if not beats:
        return 0.0
    latest = max(int(b) for b in beats.values())
    starts = []
    for node, beat in beats.items():
        raw = infos.get(node)
        if raw is None or int(beat) < latest - lease_ms:
            continue
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if info.get("state") in ("running", "paused") and isinstance(
            info.get("started"), int | float
        ):
            starts.append(float(info["started"]))
    return min(starts, default=0.0)
