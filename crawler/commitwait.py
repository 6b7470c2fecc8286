"""When a node's next commit may wait (``CRAWLER_COMMIT_WAIT``).

Each commit is a script call whose fixed cost is far above that of a page
in it, and a node crawling slow sites finishes a page or two between two
flushes: measured on a 2-node crawl of 40 slow hosts, Redis spent about
250 µs per page, nearly all of it the fixed cost of a commit per page
(``tests/benchmarks/COSTS.md``, section 6). Holding what finished pages
produced for a moment commits them together.

What is held is only ever late, never lost: the leases stay held in Redis
until the commit that acknowledges them, so a node killed meanwhile has
those pages fetched again, as it would for what it had in flight. Nothing
waits that other nodes or the crawl's politeness wait on:

* politeness news (a request finished unsent, a 429/503) and dead letters
  go at once;
* a request's start times its domain's next request (for a domain with a
  delay): its report carries when it started (``Frontier._commit_args``),
  so it may wait for half the domain's delay (the delay times the jitter
  drawn for it; a Crawl-delay or AutoThrottle only make it longer), and at
  most a second: the report is in Redis before the delay ends, and the
  domain keeps its pace.
  A report of a domain without a delay (robots.txt not read yet, a page
  budget) goes at once;
* so does everything when the node has nothing in progress or nothing
  leased ahead (its new requests may be what it leases next), stops, has a
  commit to send again, or must report what it started before handing out
  more (``crawler.starts``);
* an acknowledgement frees its domain's slot in Redis: it goes at once
  when the node holds its share of that domain's slots (the domain's
  concurrency over the live nodes, as ``lease.lua`` shares them). Below its
  share, the node could lease more of the domain anyway, and the other
  nodes, each held to its own share, still find a free slot; at its share,
  a held slot would keep the domain's next request waiting (one site, or a
  domain of concurrency 1, would crawl at half speed). What batches is the
  broad crawl's: many domains, few requests of each on one node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from crawler.frontier import Batch
from crawler.politeness import Policy

#: The longest a start report waits (seconds).
_MAX_START_HOLD = 1.0


class CommitWait:
    def __init__(self, wait: float, policy: Policy, batch_size: int) -> None:
        self.wait = wait
        self.policy = policy
        self.batch_size = batch_size
        #: When the writes waiting now began to wait (monotonic), or None.
        self.since: float | None = None
        #: When the start reports waiting now must go, or None.
        self.starts_due: float | None = None

    def may_wait(
        self,
        now: float,
        batch: Batch,
        deferred: Batch,
        urgent: bool,
        slots: dict[str, str],
        live: int,
    ) -> bool:
        """Whether the commit of *batch* (and of the acknowledgements
        *deferred* to the next commit) may wait until a later flush.
        *slots* maps the lease ids this node holds to their domains; *live*
        is the number of live nodes."""
        if not len(batch) and not len(deferred):
            self.flushed()
            return False
        if self.wait <= 0 or urgent or len(batch) >= self.batch_size:
            return False
        if batch.unblocks or batch.backoffs or batch.deads:
            return False
        self.starts_due = self._starts_due(batch.starts)
        if self.starts_due is not None and now >= self.starts_due:
            return False
        if self.since is None:
            self.since = now
        if now - self.since >= self.wait:
            return False
        return not self.slot_bound([*batch.acks, *deferred.acks], slots, live)

    def _starts_due(self, starts: Iterable[tuple[str, float, float, int]]) -> float | None:
        """When the first of *starts* must be reported: half its domain's
        delay after it started, at most a second (-inf for a domain without
        a delay). A report far later than that is timed from its arrival
        (crawler.frontier), and the domain's hold from its lease must last
        until it arrives."""
        due = None
        for slot, factor, started, _ in starts:
            hold = min(self.policy.delay_of(slot) * factor / 2, _MAX_START_HOLD)
            at = started + hold if hold > 0 else float("-inf")
            due = at if due is None else min(due, at)
        return due

    def remaining(self, now: float) -> float | None:
        """Seconds until what waits must go (None: nothing waits)."""
        if self.since is None:
            return None
        due = self.since + self.wait
        if self.starts_due is not None:
            due = min(due, self.starts_due)
        return max(0.0, due - now)

    def flushed(self) -> None:
        """Everything waiting was committed."""
        self.since = None
        self.starts_due = None

    def slot_bound(self, acks: Iterable[str], slots: dict[str, str], live: int) -> bool:
        """Whether one of *acks* is of a domain this node holds its share of
        (its concurrency over the live nodes, as lease.lua shares slots)."""
        acked = {slots[lease_id] for lease_id in acks if lease_id in slots}
        if not acked:
            return False
        held = Counter(slots.values())
        return any(held[slot] * max(1, live) >= self.policy.concurrency_of(slot) for slot in acked)
