"""A node's background task: the only code that talks to Redis during a crawl.

Scrapy's scheduler API is synchronous, and Redis I/O must never block the
event loop, so the scheduler only touches memory: it queues writes in a
``Batch`` and hands out requests this task has already leased. The task, on
the asyncio loop, flushes the batch in one script call, leases more work,
renews leases, reclaims dead nodes' work and decides when the cluster is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from scrapy.statscollectors import StatsCollector

from crawler.commits import CommitPipeline
from crawler.frontier import Batch, ClusterState, Frontier
from crawler.redis_errors import is_transient

logger = logging.getLogger(__name__)

_IDLE_POLL = 0.25
_MAX_BACKOFF = 5.0
# A node stops handing out leased requests this share of a lease (at least a
# renew interval) before its leases would expire by its own clock.
_LEASE_MARGIN = 0.2


class Worker:
    def __init__(
        self,
        frontier: Frontier,
        *,
        url: str,
        lease_ms: int,
        renew_interval: float,
        flush_interval: float,
        batch_size: int,
        prefetch: int,
        finish_grace: float,
        max_deliveries: int,
        decode: Callable[[str, bytes, bool, Batch], Any],
        decode_raw: Callable[[str, bytes, Batch], None],
        wake_engine: Callable[[], None],
        locally_idle: Callable[[], bool],
        engine_stopping: Callable[[], bool],
        stop_timeout: float,
        on_stop_timeout: Callable[[], Awaitable[None]],
        stats: StatsCollector,
        active_ids: Callable[[], set[str]],
    ) -> None:
        self.frontier = frontier
        self.url = url
        self.lease_ms = lease_ms
        self.renew_interval = renew_interval
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.finish_grace = finish_grace
        self.max_deliveries = max_deliveries
        self.decode = decode
        self.decode_raw = decode_raw
        self.wake_engine = wake_engine
        self.locally_idle = locally_idle
        self.engine_stopping = engine_stopping
        self.stop_timeout = stop_timeout
        self.on_stop_timeout = on_stop_timeout
        self._stop_since: float | None = None
        self.paused = False
        self.queued = 0
        self._roundtrips = 0
        self._sent_stats: dict[str, int | float] = {}
        self._samples: deque[tuple[float, int, int]] = deque()
        self._started = time.time()
        self.commits = CommitPipeline(frontier, batch_size, self.count)
        self.ready: deque[tuple[str, Any]] = deque()
        # Leases whose start this node must report (their domain has a
        # delay): lease id -> domain.
        self.report_start: dict[str, str] = {}
        # Domains paused after a 429/503: domain -> until (local time.time()).
        self.paused_until: dict[str, float] = {}
        self.backoff_version = 0
        self.wakeup = asyncio.Event()
        self.finished = False
        self.stopping = False
        self.stats = stats
        self.active_ids = active_ids
        self._reclaim_after = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self._quiet_since: float | None = None
        self._quiet_pushed = -1
        self._outage_since: float | None = None
        self._logged_error: dict[str, float] = {}
        # Monotonic time until which this node's leases surely hold.
        self.valid_until = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()
        if self._task is not None:
            await self._task

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.stats.inc_value(key, n)

    async def _run(self) -> None:
        backoff = 0.5
        while not self.stopping:
            try:
                await self._tick()
                if self._outage_since is not None:
                    # Every deadline may have passed by Redis's clock while it
                    # was away: give the other nodes a lease period to renew
                    # before taking their work.
                    self._reclaim_after = time.monotonic() + self.lease_ms / 1000
                    logger.warning(
                        "Redis at %s is reachable again after %.0fs; carrying on.",
                        self.url,
                        time.monotonic() - self._outage_since,
                    )
                    self._outage_since = None
                backoff = 0.5
            except Exception as exc:
                if not is_transient(exc):
                    raise  # _tick's stages catch every permanent error
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    logger.warning(
                        "Redis at %s is unreachable (%s); holding %d pending writes "
                        "in memory and retrying with backoff.",
                        self.url,
                        exc,
                        len(self.commits),
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            timeout = self.flush_interval if not self.locally_idle() else _IDLE_POLL
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self.wakeup.clear()

    def _count_roundtrips(self) -> None:
        done = self.frontier.roundtrips
        self.count("crawler/redis_roundtrips", done - self._roundtrips)
        self._roundtrips = done

    async def _stage(self, op: Callable[[], Awaitable[None]]) -> bool:
        """Run one stage of a tick. A permanent error (a bug, or data Redis
        refuses) is logged and the tick goes on, so one failing stage never
        stops the others (the heartbeat above all); transient ones are raised
        for the caller's backoff. Returns whether the stage succeeded."""
        try:
            await op()
            return True
        except Exception as exc:
            if is_transient(exc):
                raise
            self.count("crawler/worker_errors")
            now = time.monotonic()
            if now - self._logged_error.get(op.__name__, -60.0) >= 60:
                self._logged_error[op.__name__] = now
                logger.exception(
                    "%s failed; the node carries on (logged once a minute)", op.__name__
                )
            return False

    async def _tick(self) -> None:
        self._count_roundtrips()
        await self._stage(self.flush)
        now = time.monotonic()
        if now - self._last_beat >= self.renew_interval:
            if await self._stage(self._heartbeat):
                self._last_beat = now
        if self.stopping:
            return
        if self.engine_stopping():
            # Graceful stop: take no new work; what is held finishes, or is
            # handed back once CRAWLER_STOP_TIMEOUT has passed. Only time
            # spent processing requests counts, not Scrapy's own closing.
            if self.locally_idle():
                self._stop_since = None
                return
            self._stop_since = self._stop_since or now
            if now - self._stop_since >= self.stop_timeout:
                self.stopping = True
                await self.on_stop_timeout()
            return
        if len(self.ready) < self.prefetch:
            await self._stage(self._refill)
        if self.locally_idle() and not self.ready:
            await self._stage(self._check_finished)

    @property
    def batch(self) -> Batch:
        """The writes waiting for the next commit (appended to by the scheduler)."""
        return self.commits.batch

    async def flush(self) -> None:
        """Write everything queued so far (see ``crawler.commits``)."""
        await self.commits.flush()
        result = self.commits.last
        if result is not None and result.backoff_version != self.backoff_version:
            # A domain was paused: hold back what this node leased of it.
            offset = result.redis_ms / 1000 - time.time()  # Redis's clock minus ours
            pauses = await self.frontier.backoffs()
            self.paused_until = {d: ms / 1000 - offset for d, ms in pauses.items()}
            self.backoff_version = result.backoff_version

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
        deltas: dict[str, int | float] = {}
        for name, value in self.stats.get_stats().items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            delta = value - self._sent_stats.get(name, 0)
            if delta:
                deltas[name] = delta
        await self.frontier.add_stats(deltas)
        for name, delta in deltas.items():
            self._sent_stats[name] = self._sent_stats.get(name, 0) + delta

    async def leave(self) -> None:
        """Final heartbeat: this node leaves the crawl on purpose."""
        self._count_roundtrips()
        await self.push_stats()
        await self.frontier.heartbeat(0, self.describe("left"))

    def leases_valid(self) -> bool:
        """True while this node's leases surely hold by its own clock: since
        the last renewal, less than a lease less a margin has passed. After a
        pause (SIGSTOP, a VM freeze, a stuck call) they may have expired and
        their requests been reclaimed: nothing is handed out until the next
        heartbeat has renewed them and dropped what was taken back."""
        if time.monotonic() < self.valid_until:
            return True
        self._last_beat = 0.0  # renew and reconcile at the next tick
        self.wakeup.set()
        return False

    def _renewed(self, sent_at: float) -> None:
        margin = max(self.lease_ms / 1000 * _LEASE_MARGIN, self.renew_interval)
        self.valid_until = max(self.valid_until, sent_at + self.lease_ms / 1000 - margin)

    async def _heartbeat(self) -> None:
        state = "paused" if self.paused else "running"
        sent_at = time.monotonic()
        known, self.paused = await self.frontier.heartbeat(self.lease_ms, self.describe(state))
        await self.push_stats()
        self.queued = (await self.frontier.state()).queued
        if not known and self.valid_until:
            logger.warning(
                "This node's leases expired before it renewed them (was it paused "
                "or cut off from Redis for more than CRAWLER_LEASE_TIME?); its "
                "unfinished requests were handed to other nodes."
            )
        await self._reconcile()
        self._renewed(sent_at)
        if time.monotonic() < self._reclaim_after:
            return
        requeued, dead = await self.frontier.reclaim_expired(self.max_deliveries)
        if requeued or dead:
            logger.warning(
                "Returned %d requests of dead nodes to the frontier (%d dead-lettered).",
                requeued,
                dead,
            )
            self.count("crawler/reclaimed", requeued)

    async def _reconcile(self) -> None:
        """Match what Redis says this node holds with what it knows it holds.

        Prefetched requests another node reclaimed are dropped (they are back
        in the frontier); entries held in Redis that this node does not know
        of (a lease whose reply was lost) are handed back."""
        held = set(await self.frontier.held_ids())
        self.ready = deque((lid, req) for lid, req in self.ready if lid in held)
        for lid in [lid for lid in self.report_start if lid not in held]:
            del self.report_start[lid]
        orphans = sorted(held - self.known_ids())
        if orphans:
            logger.warning("Handing back %d leases this node never received.", len(orphans))
            await self.frontier.release(orphans)

    def known_ids(self) -> set[str]:
        """Lease ids this node holds: prefetched, processing, or acked but unsent."""
        known = {lid for lid, _ in self.ready} | self.active_ids()
        for batch in self.commits.batches():
            known.update(batch.acks, batch.raws, (lid for lid, _ in batch.deads))
        return known

    async def _refill(self) -> None:
        want = self.prefetch * 2 - len(self.ready)
        sent_at = time.monotonic()
        if not self.leases_valid():
            return  # what is held may be gone: renew and reconcile first
        leased = await self.frontier.lease(want, self.lease_ms)
        self._renewed(sent_at)  # a lease call renews every lease the node holds
        if leased is None:
            self.paused = True
            return
        self.paused = False
        for lease_id, entry, report in leased.entries:
            request = self.decode(lease_id, entry, report, self.batch)
            if request is not None:
                self.ready.append((lease_id, request))
        if leased.more:
            # Requests of domains that are not ready were set aside; look on.
            self.wakeup.set()
        if len(leased.entries) < want:
            raws = await self.frontier.lease_raw(want - len(leased.entries), self.lease_ms)
            for lease_id, raw in raws:
                self.decode_raw(lease_id, raw, self.batch)
            if raws:
                self.wakeup.set()
        if self.ready:
            self._quiet_since = None
            self.finished = False
            self.wake_engine()

    async def _check_finished(self) -> None:
        if len(self.commits):
            return
        state: ClusterState = await self.frontier.state()
        self.queued = state.queued
        now = time.monotonic()
        if not state.empty or state.pushed != self._quiet_pushed:
            self._quiet_since = None if not state.empty else now
            self._quiet_pushed = state.pushed
            self.finished = False
            return
        if self._quiet_since is None:
            self._quiet_since = now
        if now - self._quiet_since >= self.finish_grace and not self.finished:
            self.finished = True
            self.wake_engine()
