"""A node's lease session: the requests it holds, and whether it may hand them out.

A node leases requests ahead of need (``CRAWLER_PREFETCH``); Redis moves
them to the node's held hash with the node's deadline. The session renews
them all with each heartbeat, reconciles what it knows with what Redis says
it holds, and returns dead nodes' work to the frontier.

It hands a request out only while its leases surely hold by the node's own
clock: a lease less a margin since the last renewal. After a pause longer
than that (SIGSTOP, a VM freeze, a stuck call) another node may have
reclaimed them, so nothing goes out until a heartbeat has renewed what is
still held and dropped what was taken back.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from scrapy import Request

from crawler.config import CrawlConfig
from crawler.frontier import Batch
from crawler.partfrontier import AnyFrontier
from crawler.pauses import DomainPauses
from crawler.politeness import LEASE_AHEAD, split_entry

logger = logging.getLogger(__name__)

# Nothing is handed out this share of a lease (at least a renew interval)
# before the leases would expire by the node's own clock.
_LEASE_MARGIN = 0.2
# After a lease call that found less than it asked for, the next waits this
# long (seconds) while the node still has requests to hand out: a busy node
# ticks at every finished request, and asking an exhausted frontier each
# time cost Redis more than the pages did. A node with none asks at once.
_DRY_HOLD = 0.2
# A request whose start must be reported holds its domain for a lease's
# length from when it was leased (lease.lua's p_take; not renewed). It is
# sent before the last part of that, or handed back (``release_unsent``), so
# that its start report reaches Redis within the hold: a quarter of the
# lease, and at least the second a report may wait in a held commit
# (crawler.commitwait) and its way there, but at most half of it.
_HOLD_SHARE = 0.25
_REPORT_ALLOWANCE = 1.25
_DUE_GRACE = 0.5
# A node that handed requests back for want of downloader room leases
# nothing for this long: other nodes take them first.
_RELEASE_PAUSE = 2.0
#: Seconds between two looks for raw seeds (scrapy-redis style start_urls)
#: while none are found.
_RAW_IDLE = 1.0


class Decoder(Protocol):
    """Turns leased entries into requests; what it cannot decode it
    dead-letters in *batch* and answers None."""

    def decode(self, lease_id: str, body: bytes, batch: Batch) -> Request | None: ...

    def decode_raw(self, lease_id: str, raw: bytes, batch: Batch) -> None: ...


class LeaseSession:
    """What this node holds: leased ahead (``ready``), valid until when, and
    which leases must report their start (their domain has a delay)."""

    def __init__(
        self,
        frontier: AnyFrontier,
        config: CrawlConfig,
        count: Callable[[str, int], None],
        pauses: DomainPauses | None = None,
    ) -> None:
        self.frontier = frontier
        #: Domains paused after a 429/503, as this node knows them.
        self.pauses = pauses
        self.lease_ms = config.lease_ms
        self.renew_interval = config.renew_interval
        self.prefetch = config.prefetch
        self.max_deliveries = config.max_deliveries
        self.count = count
        self.ready: deque[tuple[str, Request]] = deque()
        #: Lease id -> when (monotonic) a request leased ahead may be sent:
        #: its domain is ready then (crawler.politeness.LEASE_AHEAD).
        self.not_before: dict[str, float] = {}
        #: Lease id -> (when, monotonic, it is handed back unsent; the end of
        #: the hold it put on its domain, Redis ms, 0 if not known), for the
        #: requests whose lease holds their domain (see _HOLD_SHARE).
        self.holding: dict[str, tuple[float, int]] = {}
        lease = self.lease_ms / 1000
        #: Seconds from a lease call within which such a request must be sent.
        self.send_within = lease - min(max(lease * _HOLD_SHARE, _REPORT_ALLOWANCE), lease / 2)
        self._released_until = 0.0  # monotonic; see _RELEASE_PAUSE
        #: (when, (domain, hold end)): requests leased ahead that could not be decoded
        #: free their domain when they were due to go out (due_unblocks).
        self.unblock_at: list[tuple[float, tuple[str, int]]] = []
        self._due_checked = 0.0
        self._raw_after = 0.0  # monotonic: when to look for raw seeds again
        # Lease id -> (domain, the end of the hold its lease put on it: Redis
        # ms, 0 if none or not known), for leases whose start the node must
        # report.
        self.report_start: dict[str, tuple[str, int]] = {}
        #: Lease id -> domain of every request this node holds in Redis
        #: (ready, in progress, or finished and not yet acknowledged there);
        #: the worker keeps it to what it still holds (``keep``).
        self.slots: dict[str, str] = {}
        #: Lease ids on their last delivery before the dead letters: they
        #: run alone (crawler.scheduler), so a crash then is theirs.
        self.last_chance: set[str] = set()
        self.paused = False  # the whole crawl is paused (scrapy pause)
        self.spent = False  # CLOSESPIDER_PAGECOUNT requests were handed out
        self.valid_until = 0.0  # monotonic
        self.renew_due = True
        self._reclaim_after = 0.0
        self._dry_until = 0.0  # monotonic; see _DRY_HOLD
        #: What the last lease call said of paused domains (crawler.pauses).
        self.backoff: tuple[int, int] | None = None

    def valid(self) -> bool:
        """True while the leases surely hold; else asks for a renewal."""
        if time.monotonic() < self.valid_until:
            return True
        self.renew_due = True
        return False

    def take(
        self,
        fits: Callable[[str, list[str]], bool] = lambda lease_id, skipped: not skipped,
        would_wait: Callable[[Request], bool] = lambda request: False,
    ) -> tuple[str, Request] | None:
        """The next leased request to hand to the engine, if any may go: the
        first in lease order whose domain is ready, if *fits* (crawler.starts)
        lets it go before the held ids it passes. One leased ahead and not
        due yet is passed, and so is one that holds its domain while the
        downloader *would_wait* to send it (its IP's slot is busy, with
        CONCURRENT_REQUESTS_PER_IP): it waits here, where the hold's end is
        watched (``release_unsent``), not in the downloader's queue, where
        it could go out after the hold ran out and another node sent the
        domain's next request. A request that must run alone
        (crawler.scheduler) goes only in its turn."""
        if not self.ready or self.paused or not self.valid():
            return None
        now = time.monotonic()
        skipped: list[str] = []
        for i, (lease_id, request) in enumerate(self.ready):
            if (skipped and lease_id in self.last_chance) or not fits(lease_id, skipped):
                return None
            self._wait_for_pause(lease_id, now)
            holds = lease_id in self.holding
            late = holds and self.holding[lease_id][0] < now
            busy = holds and not late and would_wait(request)
            if busy:
                self.count("crawler/waited_for_ip", 1)  # at each look
            if self.not_before.get(lease_id, 0.0) > now or late or busy:
                # Passed: leased ahead and not due, past its hold (handed
                # back next, release_unsent), or its IP busy. One passed
                # counts a delivery if the node dies: not for one that runs
                # alone (in its turn), nor where one is the last.
                if lease_id in self.last_chance or self.max_deliveries < 2:
                    return None
                skipped.append(lease_id)
                continue
            taken = self.ready[i]
            del self.ready[i]
            self.not_before.pop(lease_id, None)
            self.holding.pop(lease_id, None)
            self.last_chance.discard(lease_id)
            if skipped:
                self.count("crawler/passed", 1)  # went before one passed
            return taken
        return None

    def own_holds(self, domain: str) -> dict[str, int]:
        """Lease id -> the end of the hold it put on *domain* (Redis ms), of
        this node's requests of the domain leased and not handed out yet."""
        return {
            lid: hold
            for lid, (_, hold) in self.holding.items()
            if hold > 0 and self.slots.get(lid) == domain
        }

    def due_in(self, lease_ids: Iterable[str]) -> float:
        """Seconds until the last of *lease_ids* is due (0: all are)."""
        now = time.monotonic()
        return max((self.not_before.get(lid, now) - now for lid in lease_ids), default=0.0)

    def hold_back(self, lease_ids: Iterable[str], seconds: float) -> None:
        """Send none of *lease_ids* (held, not handed out) for *seconds* more."""
        until = time.monotonic() + seconds
        for lid in lease_ids:
            self.not_before[lid] = max(self.not_before.get(lid, 0.0), until)

    def _wait_for_pause(self, lease_id: str, now: float) -> None:
        """A request of a domain this node has paused for at most the
        lease-ahead time more waits here, as one leased ahead: Redis may
        hand it out due a few ms before the node's own pause ends (timed
        from when the node read Redis's clock), and a request sent while it
        is paused goes back to the frontier (crawler.backoff). One paused
        for longer goes out to be put back, freeing its lease."""
        if self.pauses is None or not self.pauses.until:
            return
        left = self.pauses.ends_in(self.slots.get(lease_id, ""))
        if 0 < left <= LEASE_AHEAD:
            self.not_before[lease_id] = max(self.not_before.get(lease_id, 0.0), now + left)

    def drop_ready(self) -> dict[str, int]:
        """Forget the requests leased and not handed out (the node is
        handing them back). Returns the ends of the holds they put on their
        domains (lease id -> Redis ms), for the hand-back."""
        holds = {lid: end for lid, (_, end) in self.holding.items()}
        self.ready.clear()
        self.not_before.clear()
        self.holding.clear()
        return holds

    def next_due(self, now: float) -> float | None:
        """When (monotonic) the next request leased ahead may be sent, or
        a domain freed (``due_unblocks``)."""
        times = [*self.not_before.values(), *(at for at, _ in self.unblock_at)]
        return min((at for at in times if at > now), default=None)

    def due_unblocks(self, now: float) -> list[tuple[str, int]]:
        """Domains to free now, each with its lease's hold end: of requests
        leased ahead, not decoded, due."""
        if not self.unblock_at:
            return []
        due = [slot for at, slot in self.unblock_at if at <= now]
        self.unblock_at = [(at, slot) for at, slot in self.unblock_at if at > now]
        return due

    def came_due(self, now: float) -> bool:
        """Whether a request leased ahead became free to send since the last
        time this was asked (the engine is then woken to take it)."""
        since, self._due_checked = self._due_checked, now
        return any(since < at <= now for at in self.not_before.values())

    def alone_next(self) -> str | None:
        """The next ready request's lease id if it must run alone."""
        if self.ready and self.ready[0][0] in self.last_chance:
            return self.ready[0][0]
        return None

    def wants_more(self) -> bool:
        if time.monotonic() < self._released_until:
            return False  # it handed back what it could not send: busy
        if not self.ready:
            return True  # nothing to hand out: ask at every tick
        return len(self.ready) < self.prefetch and time.monotonic() >= self._dry_until

    def _renewed(self, sent_at: float) -> None:
        margin = max(self.lease_ms / 1000 * _LEASE_MARGIN, self.renew_interval)
        self.valid_until = max(self.valid_until, sent_at + self.lease_ms / 1000 - margin)

    async def refill(self, decoder: Decoder, batch: Batch) -> tuple[bool, bool]:
        """Lease more. Returns (requests are ready, call again at once)."""
        if not self.valid():
            return False, False  # what is held may be gone: renew first
        want = self.prefetch * 2 - len(self.ready)
        sent_at, valid_until = time.monotonic(), self.valid_until
        leased = await self.frontier.lease(want, self.lease_ms)
        if time.monotonic() < valid_until:
            self._renewed(sent_at)  # a lease call renews every lease the node holds
        else:
            # The call outlived the leases: what was held may have been
            # reclaimed meanwhile; renew and reconcile before handing out.
            self.renew_due = True
        if leased is None:
            self.paused = True
            return False, False
        self.paused = False
        self.spent = leased.spent
        self.backoff = leased.backoff
        # Deliveries counted so far: at the last one before the dead letters
        # (with more than one allowed), the request runs alone.
        last = self.max_deliveries - 1 if self.max_deliveries > 1 else None
        received = time.monotonic()
        for lease_id, entry, report in leased.entries:
            slot, body = split_entry(entry)
            # The end of the hold its lease put on its domain (Redis's clock
            # at the call; 0: none, or not known).
            hold = 0
            if lease_id in leased.holds and leased.backoff:
                hold = leased.backoff[1] + self.lease_ms
            request = decoder.decode(lease_id, body, batch)
            if request is not None:
                self.ready.append((lease_id, request))
                due = received
                if lease_id in leased.waits:
                    # From when the reply came: never before Redis's time.
                    due = self.not_before[lease_id] = received + leased.waits[lease_id]
                self.slots[lease_id] = slot
                if last is not None and _deliveries(entry) >= last:
                    self.last_chance.add(lease_id)
                if report:
                    self.report_start[lease_id] = (slot, hold)
                if lease_id in leased.holds:
                    # (One leased ahead gets a moment once due, however short
                    # the lease.)
                    send_by = max(sent_at + self.send_within, due + _DUE_GRACE)
                    self.holding[lease_id] = (send_by, hold)
            elif report:
                # Its domain need not wait for it; if leased ahead, only once it
                # was due: until then the delay after the last start runs.
                if lease_id in leased.waits:
                    self.unblock_at.append((received + leased.waits[lease_id], (slot, hold)))
                else:
                    batch.unblocks.append((slot, hold))
        again = leased.more
        if len(leased.entries) < want and not leased.more:
            self._dry_until = time.monotonic() + _DRY_HOLD
        if len(leased.entries) < want and received >= self._raw_after:
            raws = await self.frontier.lease_raw(want - len(leased.entries), self.lease_ms)
            for lease_id, raw in raws:
                decoder.decode_raw(lease_id, raw, batch)
            again = again or bool(raws)
            # Raw seeds are pushed now and then: after finding none, look
            # again in a second, not at every lease call.
            self._raw_after = 0.0 if raws else received + _RAW_IDLE
        return bool(self.ready), again

    async def renew(self, info: str, known_ids: Callable[[], set[str]]) -> None:
        """Heartbeat: renew every lease, reconcile, reclaim dead nodes' work."""
        sent_at = time.monotonic()
        known, self.paused = await self.frontier.heartbeat(self.lease_ms, info)
        if not known and self.valid_until:
            logger.warning(
                "This node's leases expired before it renewed them (was it paused "
                "or cut off from Redis for more than CRAWLER_LEASE_TIME?); its "
                "unfinished requests were handed to other nodes."
            )
        await self._reconcile(known_ids, sent_at)
        self.renew_due = False
        if time.monotonic() >= self._reclaim_after:
            await self._reclaim()

    async def _reconcile(self, known_ids: Callable[[], set[str]], sent_at: float) -> None:
        """Prefetched requests another node reclaimed are dropped (they are
        back in the frontier); entries held in Redis that this node does not
        know of (a lease whose reply was lost) are handed back."""
        held = set(await self.frontier.held_ids())
        self.ready = deque((lid, req) for lid, req in self.ready if lid in held)
        self.not_before = {lid: at for lid, at in self.not_before.items() if lid in held}
        self.holding = {lid: h for lid, h in self.holding.items() if lid in held}
        for lid in [lid for lid in self.report_start if lid not in held]:
            del self.report_start[lid]
        self.last_chance &= held
        self.keep(held)
        # What is left is surely held: valid, even if handing back fails.
        self._renewed(sent_at)
        orphans = sorted(held - known_ids() - {lid for lid, _ in self.ready})
        if orphans:
            logger.warning("Handing back %d leases this node never received.", len(orphans))
            await self.frontier.release(orphans)

    async def release_unsent(self) -> None:
        """Hand back the requests that waited here (a busy downloader) past
        the time to send them within their domain's hold: sent later, one
        could go out right after the domain's next request, leased by another
        node once the hold ran out. Redis has the domain wait one delay from
        now, and the request goes back to the head of the line."""
        now = time.monotonic()
        late = {lid for lid, (send_by, _) in self.holding.items() if send_by < now}
        if not late:
            return
        self.ready = deque((lid, req) for lid, req in self.ready if lid not in late)
        holds = {lid: self.holding.pop(lid)[1] for lid in late}
        self._released_until = now + _RELEASE_PAUSE
        for lid in late:
            self.not_before.pop(lid, None)
            self.report_start.pop(lid, None)
            self.slots.pop(lid, None)
            self.last_chance.discard(lid)
        # If this call fails, the next heartbeat's reconcile hands them back.
        requeued = await self.frontier.release(sorted(late), holds)
        self.count("crawler/released_unsent", requeued)
        logger.info(
            "Handed back %d requests of domains with a delay that waited here "
            "unsent for %.1fs of their %.0fs hold (CRAWLER_LEASE_TIME).",
            requeued,
            self.send_within,
            self.lease_ms / 1000,
        )

    async def _reclaim(self) -> None:
        requeued, dead = await self.frontier.reclaim_expired(self.max_deliveries)
        if requeued or dead:
            logger.warning(
                "Returned %d requests of dead nodes to the frontier (%d dead-lettered).",
                requeued,
                dead,
            )
            self.count("crawler/reclaimed", requeued)

    def after_outage(self) -> None:
        """Every deadline may have passed by Redis's clock while it was away:
        give the other nodes a lease period to renew before taking their work."""
        self._reclaim_after = time.monotonic() + self.lease_ms / 1000

    def keep(self, held: set[str]) -> None:
        """Forget the domains of leases this node no longer holds."""
        self.slots = {lid: slot for lid, slot in self.slots.items() if lid in held}

    def started(self, lease_id: str) -> tuple[str, int] | None:
        """The domain whose start must be reported for *lease_id*, if any,
        and the end of the hold its lease put on it (0: none or not known)."""
        return self.report_start.pop(lease_id, None)


def _deliveries(entry: bytes) -> int:
    """Deliveries counted for a frontier entry (``"<deliveries>|..."``)."""
    head = entry.partition(b"|")[0]
    return int(head) if head.isdigit() else 0
