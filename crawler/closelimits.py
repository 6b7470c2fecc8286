"""Scrapy's CLOSESPIDER_ITEMCOUNT, CLOSESPIDER_ERRORCOUNT and
CLOSESPIDER_TIMEOUT, meaning the whole cluster's totals.

Scrapy's CloseSpider extension counts what one process saw: on a fleet of N
nodes each would scrape its own CLOSESPIDER_ITEMCOUNT items (N times the
limit in all) and time out N times over as nodes join late. Here:

* items and errors are the cluster's sums of Scrapy's own counters
  (``item_scraped_count``, ``spider_exceptions/count``), which every node
  adds to ``{N}:clusterstats``; each node reads the sums back and closes
  once one reaches its limit;
* all count from the start of the crawl's current *run*: a node that finds
  no other node live begins one (``{N}:run``: its start by Redis's clock,
  and the counted stats then), a node that joins a live crawl joins its
  run; so a node that joins late closes with the others, and a crawl
  started again after it stopped counts afresh, as Scrapy does per process.
  A node killed -9 counts as live for a lease (``CRAWLER_LEASE_TIME``), so
  nodes restarted within it continue its run.

A spider that raises CloseSpider closes the run too: its node records the
reason in the run's record, and every node reads it within a second and
closes with it, as one Scrapy process would close (``Worker._check_closed``,
and with each heartbeat).

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
        self.deadline = 0.0  # time.monotonic() at which the run times out (0: never)
        self.base: dict[str, int] = {}  # the counted stats when the run began
        self._checked = 0.0

    async def start(self) -> None:
        """Join the crawl's current run, or begin one if no other node is
        live, or if a spider's CloseSpider closed the current one (``closed``
        in its record): the run's start (Redis clock) and its counted stats
        then. A new run is open."""
        # Every counted stat's base, whatever this node counts: a node that
        # joins the run later may count another.
        stats = [stat for stat, *_ in _COUNTED]
        infos, beats, run, totals = await self.frontier.run_state(stats)
        now = time.monotonic()
        me = self.frontier.node.encode()
        own = int(beats.get(me, 0))  # our heartbeat just now, by Redis's clock
        others = {n: b for n, b in beats.items() if n != me}
        # A run a CloseSpider closed is never joined: nodes started again
        # together would each find the others live and close at once.
        closed = bool(run.get(b"closed"))
        if b"started" not in run or closed or not live_nodes(infos, others, own, self.lease_ms):
            run = {b"started": str(own).encode()}
            run.update({f"base:{s}".encode(): totals.get(s) or b"0" for s in stats})
            await self.frontier.new_run({k.decode(): v for k, v in run.items()})
        counted = [stat for stat, *_ in self.limits.counts]
        self.base = {s: int(float(run.get(f"base:{s}".encode(), 0))) for s in counted}
        if self.limits.timeout > 0:
            ran = max(own - int(run[b"started"]), 0) / 1000
            self.deadline = now + self.limits.timeout - ran

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
        if self.deadline and time.monotonic() >= self.deadline:
            return f"the crawl's run lasted CLOSESPIDER_TIMEOUT={self.limits.timeout:g}s"
        return None

    async def reached(self) -> tuple[str, str] | None:
        """(Scrapy's close reason, why) once a counted limit is reached by
        the cluster's totals in this run (read after this node added its own)."""
        if not self.limits.counts:
            return None
        totals = await self.frontier.cluster_stats([stat for stat, *_ in self.limits.counts])
        for (stat, limit, name, reason), total in zip(self.limits.counts, totals, strict=True):
            ran = total - self.base.get(stat, 0)
            if ran >= limit:
                return reason, f"the cluster's {stat} in this run is {ran} ({name}={limit})"
        return None


def live_nodes(infos: dict[Any, Any], beats: dict[Any, Any], now_ms: int, lease_ms: int) -> int:
    """How many nodes of ``{N}:nodeinfo`` are running or paused with a
    heartbeat (``{N}:nodebeat``, Redis clock) within a lease of *now_ms*."""
    live = 0
    for node, beat in beats.items():
        raw = infos.get(node)
        if raw is None or int(beat) < now_ms - lease_ms:
            continue
        try:
            state = json.loads(raw).get("state")
        except (ValueError, AttributeError):
            continue
        live += state in ("running", "paused")
    return live
