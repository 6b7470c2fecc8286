"""Cluster completion: when the whole crawl, not just this node, is done.

A node is merely idle when its own engine has nothing to do. The crawl is
finished when the frontier is empty, no node holds a request, no seed waits
in the start URL key, and nothing new was queued for
``CRAWLER_FINISH_GRACE`` seconds (a node that just acked a page may be
about to push its links).
"""

from __future__ import annotations

import time

from crawler.partfrontier import AnyFrontier

_DUE_REST = 1.0


class ClusterCompletion:
    """Watches the crawl's counters while this node is idle."""

    def __init__(self, frontier: AnyFrontier, finish_grace: float) -> None:
        self.frontier = frontier
        self.finish_grace = finish_grace
        self.finished = False
        # Requests scheduled once the crawl was finished (a spider_idle
        # handler's) wait for their commit: new work, or duplicates.
        self.unsettled = False
        self.queued = 0  # the frontier's size when last read (for metrics)
        self._quiet_since: float | None = None
        self._quiet_pushed = -1
        # Only pages due later were left (crawler.recrawl): look again then.
        self._rest_until = 0.0

    @property
    def winding_up(self) -> bool:
        """The crawl looked finished when last read (nothing queued, held
        or waiting in the start URL key) and only ``CRAWLER_FINISH_GRACE``
        is left to wait out."""
        return self._quiet_since is not None and not self.finished

    def work_arrived(self) -> None:
        """This node got work: whatever was observed before no longer holds."""
        self._quiet_since = None
        self._rest_until = 0.0
        self.finished = False
        self.unsettled = False

    async def check(self) -> bool:
        """Read the crawl's state (with this node's writes committed); True
        when it has just become finished, or stays finished after requests
        scheduled since turned out to be duplicates (the engine looks again
        and closes, as Scrapy's dupefilter would let it)."""
        now = time.monotonic()
        if now < self._rest_until and not self.unsettled:
            return False
        unsettled, self.unsettled = self.unsettled, False
        state = await self.frontier.state()
        self.queued = state.queued
        if state.due and not (state.queued > 0 or state.leased > 0 or state.start_urls > 0):
            # Nothing to do but wait for due pages, which the worker moves
            # (and wakes the engine for) once a second.
            self._rest_until = now + _DUE_REST
        if not state.empty or state.pushed != self._quiet_pushed:
            self._quiet_since = None if not state.empty else now
            self._quiet_pushed = state.pushed
            self.finished = False
            return False
        if unsettled and self.finished:
            return True
        if self._quiet_since is None:
            self._quiet_since = now
        if now - self._quiet_since >= self.finish_grace and not self.finished:
            self.finished = True
            return True
        return False
