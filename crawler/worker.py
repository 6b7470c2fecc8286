"""A node's background task: the only code that talks to Redis during a crawl.

Scrapy's scheduler API is synchronous, and Redis I/O must never block the
event loop, so the scheduler only touches memory: it queues writes for the
commit pipeline and hands out requests the lease session already leased.
This task, on the asyncio loop, ties the units together:

* ``crawler.commits.CommitPipeline``: batches, idempotent commits, bad
  entries isolated;
* ``crawler.leases.LeaseSession``: lease ahead, renew, reconcile, reclaim,
  hand out only while the leases hold;
* ``crawler.completion.ClusterCompletion``: when the whole crawl is done;
* ``crawler.nodereport.NodeReport``: the node's info and stats in Redis.

Transient Redis errors (``crawler.redis_errors``) make the whole tick back
off; any other error is the failing stage's alone, logged, and never stops
the others (the heartbeat above all).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from scrapy.statscollectors import StatsCollector

from crawler.closelimits import ClusterLimits
from crawler.commits import CommitPipeline
from crawler.commitwait import CommitWait
from crawler.completion import ClusterCompletion
from crawler.config import CrawlConfig
from crawler.frontier import Batch
from crawler.leases import Decoder, LeaseSession
from crawler.localseen import LocalSeen
from crawler.nodereport import NodeReport
from crawler.outcome import read_outcome
from crawler.partfrontier import AnyFrontier
from crawler.pauses import DomainPauses
from crawler.redis_errors import is_permission, is_transient, permission_message

logger = logging.getLogger(__name__)

_IDLE_POLL = 0.25
# Requests a lease call parked in this node's inbox (crawler/lua/lease.lua)
# move to their domains' lists with its next lease call, or with a call of
# their own once they waited this long (seconds): a call of its own cost a
# slow broad crawl a third of its lease calls.
_INBOX_WAIT = 0.5
_MAX_BACKOFF = 5.0
# Seconds between two looks for pages due again (crawler.recrawl).
_DUE_INTERVAL = 1.0


class NodeEngine(Protocol):
    """What the worker needs of the node's Scrapy side (the scheduler)."""

    def wake(self) -> None:
        """Make the engine ask for requests now (some were leased)."""

    def locally_idle(self) -> bool:
        """True if the engine is processing no leased request."""

    def stopping(self) -> bool:
        """True once a graceful stop (SIGTERM, Ctrl-C) began."""

    def active_ids(self) -> set[str]:
        """Lease ids of the requests the engine is processing."""

    async def stop_timed_out(self) -> None:
        """The graceful stop took longer than CRAWLER_STOP_TIMEOUT: hand
        everything back and stop now."""

    def refused(self, message: str) -> None:
        """Redis refused this node's user a permission: log *message* and
        stop the crawl on this node (exit status 1)."""

    def page_count_reached(self) -> None:
        """The cluster handed out CLOSESPIDER_PAGECOUNT requests and this
        node finished its own: close as Scrapy's CloseSpider does."""

    def limit_reached(self, reason: str, why: str) -> None:
        """The cluster reached a CLOSESPIDER_* limit (crawler.closelimits):
        close with Scrapy's *reason*."""

    def winding_up(self) -> None:
        """The crawl is out of work and waits out CRAWLER_FINISH_GRACE
        before it is finished."""


class Worker:
    def __init__(
        self,
        frontier: AnyFrontier,
        config: CrawlConfig,
        engine: NodeEngine,
        decoder: Decoder,
        stats: StatsCollector,
        url: str,
        local_seen: LocalSeen,
    ) -> None:
        self.frontier = frontier
        self.config = config
        self.engine = engine
        self.decoder = decoder
        self.url = url
        self.report = NodeReport(frontier, stats, config.lease_ms)
        self.count = self.report.count
        self.commits = CommitPipeline(
            frontier, config.batch_size, self.count, local_seen, config.concurrency
        )
        self.pauses = DomainPauses()
        self.leases = LeaseSession(frontier, config, self.count, self.pauses)
        self.commit_wait = CommitWait(config.commit_wait, config.policy, config.batch_size)
        self.completion = ClusterCompletion(frontier, config.finish_grace)
        self.limits = ClusterLimits(frontier, config.close_limits, config.lease_ms)
        self.wakeup = asyncio.Event()
        self.stopping = False
        #: Set once the node handed back what it held (``hand_back``): a
        #: download still waiting for its domain's turn gives up.
        self.handed_back = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self._last_due = 0.0
        self._stop_since: float | None = None
        self._outage_since: float | None = None
        self._logged_error: dict[str, float] = {}

    @property
    def batch(self) -> Batch:
        """The writes waiting for the next commit (appended to by the scheduler)."""
        return self.commits.batch

    @property
    def queued(self) -> int:
        """The frontier's size when last read (for the metrics endpoint)."""
        return self.completion.queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        backoff = 0.5
        while not self.stopping:
            try:
                await self._tick()
                self._outage_over()
                backoff = 0.5
            except Exception as exc:
                if not is_transient(exc):
                    raise  # _tick's stages catch every permanent error
                if is_permission(exc):
                    # A setup error, not an outage: stop as a crash would
                    # (the leases expire; nodes with the rules redo the work).
                    self.stopping = True
                    self.engine.refused(permission_message(exc, "node"))
                    return
                self._outage_began(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            idle = self.engine.locally_idle()
            timeout = self.config.flush_interval if not idle else _IDLE_POLL
            now = time.monotonic()
            if self.leases.came_due(now):
                self.engine.wake()  # one leased ahead came due during the tick
            held = self.commit_wait.remaining(now)
            if held is not None:
                timeout = min(timeout, held)  # a held commit goes on time
            due = self.leases.next_due(now)
            if due is not None:
                timeout = min(timeout, due - now)  # a request leased ahead goes on time
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            except TimeoutError:
                pass
            self.wakeup.clear()

    def _outage_began(self, exc: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "Redis at %s is unreachable or refusing writes (%s); holding %d pending writes "
                "in memory and retrying with backoff.",
                self.url,
                exc,
                len(self.commits),
            )

    def _outage_over(self) -> None:
        if self._outage_since is None:
            return
        self.leases.after_outage()
        # A restart or failover may have lost acknowledged writes.
        self.commits.local_seen.forget_seen()
        logger.warning(
            "Redis at %s is reachable again after %.0fs; carrying on.",
            self.url,
            time.monotonic() - self._outage_since,
        )
        self._outage_since = None

    async def _stage(self, op: Callable[[], Awaitable[None]]) -> bool:
        """Run one stage of a tick. A permanent error (a bug, or data Redis
        refuses) is logged and the tick goes on; transient ones are raised
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
        self.report.count_roundtrips()
        if self.leases.came_due(time.monotonic()):
            self.engine.wake()
        self.batch.unblocks += self.leases.due_unblocks(time.monotonic())
        await self._stage(self.flush)
        now = time.monotonic()
        renew = self.leases.renew_due or now - self._last_beat >= self.config.renew_interval
        if renew and await self._stage(self._heartbeat):
            self._last_beat = now
        if self.stopping:
            return
        if self.engine.stopping():
            await self._graceful_stop(now)
            return
        why = self.limits.timed_out()
        if why:
            self.engine.limit_reached("closespider_timeout", why)
        if self.limits.due(now):  # between heartbeats, at most every second
            await self._stage(self._check_limits)
        if now - self._last_due >= _DUE_INTERVAL:
            self._last_due = now
            await self._stage(self._move_due)
            await self._stage(self._check_closed)
        if self.leases.holding:
            await self._stage(self.leases.release_unsent)
        if self.leases.wants_more():
            await self._stage(self._refill)
        if self.frontier.inbox_due(_INBOX_WAIT):
            # Requests this node parked where only it sees them, and no
            # lease call moved them since: to their domains' lists now, for
            # every node (crawler/lua/lease.lua).
            await self._stage(self._drain_inbox)
        if self.engine.locally_idle() and not self.leases.ready:
            await self._stage(self._check_finished)

    async def _graceful_stop(self, now: float) -> None:
        """Take no new work; what is held finishes, or is handed back once
        CRAWLER_STOP_TIMEOUT has passed. Only time spent processing requests
        counts, not Scrapy's own closing."""
        if self.engine.locally_idle():
            self._stop_since = None
            return
        self._stop_since = self._stop_since or now
        if now - self._stop_since >= self.config.stop_timeout:
            self.stopping = True
            await self.engine.stop_timed_out()

    async def flush(self) -> None:
        """Write everything queued so far (see ``crawler.commits``), unless
        it may wait for more (``crawler.commitwait``)."""
        starts = self.commits.starts
        was_waiting = self.commit_wait.since is not None
        if self._commit_may_wait():
            if not was_waiting:
                self.count("crawler/commits_waited", 1)  # writes began to wait
        else:
            await self.commits.flush()
            if starts.refused and len(self.frontier.deferred()) and not self.commits.settled():
                # Acknowledgements held back a commit (partitions): a hand-out
                # waits for them, so send them now.
                await self.commits.flush()
            self.commit_wait.flushed()
            self.leases.keep(self.known_ids() | {lid for lid, _ in self.leases.ready})
            if starts.passing:
                starts.passing = False
                self.engine.wake()  # one may pass a request leased ahead now
        # A hand-out waiting for a report, or for everything to be
        # acknowledged (a request running alone, crawler.scheduler).
        if starts.refused and (self.commits.settled() or starts.may_hand_out()):
            starts.refused = False
            self.engine.wake()
        await self.pauses.refresh(self.frontier, self.commits.last)

    def _commit_may_wait(self) -> bool:
        commits, engine = self.commits, self.engine
        urgent = (
            self.stopping
            or engine.stopping()
            or bool(commits.pending)
            or commits.starts.refused
            or commits.starts.pressing()
            or engine.locally_idle()
            or not self.leases.ready
        )
        return self.commit_wait.may_wait(
            time.monotonic(),
            commits.batch,
            self.frontier.deferred(),
            urgent,
            self.leases.slots,
            self.frontier.live_nodes,
        )

    async def _heartbeat(self) -> None:
        state = "paused" if self.leases.paused else "running"
        await self.leases.renew(self.report.describe(state), self.known_ids)
        if self.frontier.closed:
            reason = self.frontier.closed
            self.engine.limit_reached(reason, f"a node's spider raised CloseSpider({reason!r})")
        await self._check_limits()
        self.completion.queued = (await self.frontier.state()).queued

    async def _check_closed(self) -> None:
        """A spider's CloseSpider on another node closes this one within a
        second, as it stops one Scrapy process at once: at the next
        heartbeat (CRAWLER_LEASE_RENEW_INTERVAL, 10 s) the other nodes
        crawled on meanwhile, to the crawl's end if it came first (helper 49)."""
        reason = await self.frontier.read_closed()
        if reason:
            self.engine.limit_reached(reason, f"a node's spider raised CloseSpider({reason!r})")

    async def _check_limits(self) -> None:
        """Add this node's stats to the cluster's; close at a CLOSESPIDER_* total."""
        await self.report.push_stats()
        reached = await self.limits.reached()
        if reached:
            self.engine.limit_reached(*reached)

    def known_ids(self) -> set[str]:
        """Lease ids this node holds besides those ready: processing, or
        finished and not yet committed."""
        known = self.engine.active_ids()
        for batch in self.commits.batches():
            known.update(batch.acks, batch.raws, (lid for lid, _ in batch.deads))
        return known

    async def _refill(self) -> None:
        ready, again = await self.leases.refill(self.decoder, self.batch)
        # Domains other nodes paused meanwhile: news that a held commit
        # (crawler.commitwait) would otherwise bring late.
        await self.pauses.refresh_from(self.frontier, self.leases.backoff)
        if again:
            self.wakeup.set()  # more to look at, or raw seeds became requests
        if ready:
            self.completion.work_arrived()
            self.engine.wake()

    async def _move_due(self) -> None:
        """Pages due again (crawler.recrawl) back into the frontier."""
        if await self.frontier.move_due():
            self.completion.work_arrived()
            self.engine.wake()

    async def _drain_inbox(self) -> None:
        await self.frontier.drain_inbox(self.config.lease_ms)

    async def _check_finished(self) -> None:
        if len(self.commits):
            return
        if self.leases.spent:
            self.engine.page_count_reached()
            return
        if await self.completion.check():
            self.engine.wake()
        elif self.completion.winding_up:
            self.engine.winding_up()

    async def close(self) -> None:
        """The node leaves: write what is pending, hand back what it holds
        (prefetched, never started), leave the crawl and say how it ended.
        An unreachable Redis is waited for (with backoff) for at most
        CRAWLER_STOP_TIMEOUT in all; what is not written by then returns
        to the frontier when this node's leases expire."""
        holds = self.leases.drop_ready()
        timeout = self.config.stop_timeout
        deadline = time.monotonic() + timeout
        said = False

        def waiting(exc: Exception, _: float) -> None:
            nonlocal said
            if said:
                return
            said = True
            logger.warning(
                "Redis at %s is unreachable while this node closes (%s); waiting up to "
                "%.0f s more (CRAWLER_STOP_TIMEOUT=%gs) to write its %d pending writes, "
                "hand back the %d requests it leased ahead and leave the crawl.",
                self.url,
                exc,
                max(0.0, deadline - time.monotonic()),
                timeout,
                len(self.commits),
                len(holds),
            )

        steps = (
            self.commits.flush_all,
            lambda: self.frontier.release_all(holds),
            self.report.leave,
        )
        try:
            for step in steps:
                await retry_for(max(0.0, deadline - time.monotonic()), step, waiting=waiting)
            await self._report_outcome()
        except Exception as exc:
            logger.error(
                "Could not reach Redis at %s while closing (%s), within "
                "CRAWLER_STOP_TIMEOUT=%gs: %d pending writes are lost from this node; "
                "its leases expire and other nodes redo that work.",
                self.url,
                exc,
                timeout,
                len(self.commits),
            )
        await self.frontier.client.aclose()

    async def hand_back(self) -> None:
        """Stop now: write what is pending and hand back everything held."""
        self.handed_back.set()
        holds = self.leases.drop_ready()
        await self.commits.flush_all()
        await self.frontier.release_all(holds)
        await self.frontier.client.aclose()

    async def _report_outcome(self) -> None:
        """Say what the crawl gave up on, so it never ends as a silent success
        (``crawler.outcome``); the crawl command's exit status reads the stat."""
        outcome = await read_outcome(self.frontier.client, self.config.partitions())
        # Writes Redis refused even alone, dead letters included: lost, and
        # said so, so that the crawl does not end as a success.
        dropped = int(self.report.stats.get_value("crawler/dropped_writes", 0))
        self.report.stats.set_value("crawler/dead_letters", outcome.dead + dropped)
        for line in outcome.lines(self.config.name):
            logger.warning("%s", line)
        if dropped:
            logger.error(
                "This node dropped %d writes Redis refused even one at a time (see the "
                "errors above): the crawl's results are incomplete.",
                dropped,
            )


# How often retry_for's wait looks at its *stopped* (seconds).
_STOP_POLL = 0.25


async def retry_for(
    seconds: float,
    op: Callable[[], Awaitable[object]],
    retry: Callable[[Exception], bool] = is_transient,
    waiting: Callable[[Exception, float], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> bool:
    """Run *op*, again with backoff (0.5 s doubling to 5 s) while it raises
    what *retry* accepts, for at most *seconds* (the last try at the
    deadline); *waiting* hears of each wait (the error and the deadline).
    With *stopped*, a wait ends as soon as it says so (looked at every
    _STOP_POLL seconds): False then, True once *op* succeeded."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            await op()
            return True
        except Exception as exc:
            left = deadline - time.monotonic()
            if not retry(exc) or left <= 0:
                raise
            if waiting is not None:
                waiting(exc, deadline)
            until = time.monotonic() + min(delay, left)
            while (rest := until - time.monotonic()) > 0:
                if stopped is not None and stopped():
                    return False
                await asyncio.sleep(rest if stopped is None else min(rest, _STOP_POLL))
            if stopped is not None and stopped():
                return False
            delay = min(delay * 2, 5.0)
