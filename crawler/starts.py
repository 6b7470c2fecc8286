"""Which of a node's leased requests have started, as Redis knows it.

A reclaim after a crash counts a delivery only for requests that started
(``requeue_held.lua``): a crash is not the fault of the requests a node had
merely prefetched, and one page that keeps killing its node must not take
its neighbours in the queue to the dead letters with it.

A node hands its requests to the engine in lease order (lease ids grow with
each lease), and each commit reports the highest lease id handed out as
"<id>|<window>". Beyond its last applied report it hands out at most
*window* more, and Redis counts that many held ids above the reported one
as started too: so a request that kills its node the moment it arrives,
before any report could go out, still counts.

A request leased ahead (its domain ready in a moment, crawler.politeness)
may be passed by those behind it: then it and every held id below the
reported one count as started if the node dies, a delivery more at worst
(so none is passed on its last delivery, nor with CRAWLER_MAX_DELIVERIES=1,
where that delivery would dead-letter it unsent), and a request goes out
past it only while the ids it passes, with those handed out since the last
report, stay within the window (fits).

A request on its last delivery (``CRAWLER_MAX_DELIVERIES`` less one) runs
alone: the node hands it out only once nothing else is in progress or
unacknowledged and Redis has a report whose window is 1, and hands out
nothing more (window 0) until it is acknowledged. So a crash then is its
own doing, and a request that kills every node it reaches takes no
neighbour to the dead letters with it (``crawler.scheduler``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from crawler.partitions import global_id, split_id


class StartReports:
    def __init__(self, window: int) -> None:
        self.window = max(1, window)
        #: The window reported now: the node's concurrency, or 1 / 0 while a
        #: request runs alone (isolate).
        self.current = self.window
        self._handed: deque[int] = deque()  # handed out, not yet in an applied report
        self._applied = -1  # the reported id Redis has (-1: nothing yet)
        self._applied_window = self.window
        #: A hand-out was refused since the last applied report: the engine
        #: must be woken once one is applied, or it waits for its heartbeat.
        self.refused = False
        #: A request could not pass one leased ahead for the window: the
        #: engine is woken after the next commit (_refuse).
        self.passing = False

    def limit(self) -> int:
        """How many may go out beyond the applied report."""
        return min(self.current, self._applied_window)

    def may_hand_out(self) -> bool:
        """False once *window* requests went out since the last applied
        report: the next commit must carry one first."""
        if len(self._handed) < self.limit():
            return True
        self.refused = True
        return False

    def isolate(self, window: int | None, lease_id: str = "") -> None:
        """Report *window* from now (None: the node's concurrency again)."""
        self.current = self.window if window is None else window

    def fits(self, lease_id: str, skipped: list[str]) -> bool:
        """Whether *lease_id* may go before the held ids *skipped*: Redis
        counts held ids above the last report, in id order, up to the window."""
        if len(self._handed) + len(skipped) < self.limit():
            return True
        _refuse(self, skipped)
        return False

    def handed_out(self, lease_id: str) -> None:
        self._handed.append(int(lease_id))

    def due(self) -> bool:
        """A report must go out (even in a commit of nothing else)."""
        return self._applied < 0 or bool(self._handed) or self._applied_window != self.current

    def pressing(self) -> bool:
        """A report must go out soon: Redis has none, the window changed, or
        three quarters of what may go out beyond the last one went (a held
        commit, crawler.commitwait, must not make the engine wait)."""
        if self._applied < 0 or self._applied_window != self.current:
            return True
        return 4 * len(self._handed) >= 3 * self.limit()

    def report(self) -> tuple[str, Any]:
        """("<id>|<window>" or "" if Redis has it already, (the id, the window))."""
        # Never below the last applied: one leased ahead and passed may go
        # after a report that covered it already.
        top = max(self._applied, *self._handed, 0)
        same = top == self._applied and self._applied_window == self.current
        return ("" if same else f"{top}|{self.current}"), (top, self.current)

    def applied(self, got: Any) -> None:
        top, window = got
        # Not only from the front: passing hands ids out of order.
        self._handed = deque(i for i in self._handed if i > top)
        self._applied = max(self._applied, top)
        self._applied_window = window


class PartitionedStartReports:
    """StartReports of a crawl split into partitions (crawler.partitions):
    one per partition, as lease ids are numbered per partition; at most
    *window* handed out beyond the reports in all of them together."""

    def __init__(self, window: int, count: int) -> None:
        self.window = max(1, window)
        self.parts = [StartReports(window) for _ in range(count)]
        self.refused = False
        self.passing = False  # as in StartReports

    def may_hand_out(self) -> bool:
        limit = min(self.window, sum(part.limit() for part in self.parts))
        if sum(len(part._handed) for part in self.parts) < limit:
            return True
        self.refused = True
        return False

    def isolate(self, window: int | None, lease_id: str = "") -> None:
        """Report *window* for *lease_id*'s partition and 0 for the others
        (None: the node's concurrency in every partition again)."""
        p = split_id(lease_id)[0] if lease_id else -1
        for k, part in enumerate(self.parts):
            part.isolate(None if window is None else window if k == p else 0)

    def fits(self, lease_id: str, skipped: list[str]) -> bool:
        p, local = split_id(lease_id)
        same = [other for q, other in map(split_id, skipped) if q == p]
        total = sum(len(part._handed) for part in self.parts) + len(skipped)
        if total < self.window and self.parts[p].fits(local, same):
            return True
        _refuse(self, skipped)
        return False

    def handed_out(self, lease_id: str) -> None:
        p, local = split_id(lease_id)
        self.parts[p].handed_out(local)

    def due(self) -> bool:
        return any(part.due() for part in self.parts)

    def pressing(self) -> bool:
        if any(part._applied < 0 or part._applied_window != part.current for part in self.parts):
            return True
        limit = min(self.window, sum(part.limit() for part in self.parts))
        return 4 * sum(len(part._handed) for part in self.parts) >= 3 * limit

    def report(self) -> tuple[str, Any]:
        """("p:<id>|<window>,..." for the partitions with news, the ids)."""
        texts, tops = [], {}
        for p, part in enumerate(self.parts):
            text, tops[p] = part.report()
            if text:
                texts.append(global_id(p, text))
        return ",".join(texts), tops

    def applied(self, top: Any) -> None:
        for p, part_top in top.items():
            self.parts[p].applied(part_top)


def _refuse(reports: StartReports | PartitionedStartReports, skipped: list[str]) -> None:
    """The head of the line refused: a commit is due at once, as in
    may_hand_out. One that would pass others waits for the next commit,
    held or not (crawler.commitwait), and is woken after it: hurrying a
    commit for each took a polite broad crawl from 0.7 to 1.1-1.6 script
    calls a page (tests/benchmarks/COSTS.md, section 7)."""
    if skipped:
        reports.passing = True
    else:
        reports.refused = True
