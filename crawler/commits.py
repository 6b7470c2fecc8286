"""The commit pipeline: a node's pending writes, sent to Redis in batches.

The scheduler, middlewares and pipeline append to ``pipeline.batch``; the
worker calls ``flush()``. A flush sends the batch in chunks of at most
``batch_size`` writes, acknowledgements with the last chunk, so a request
leaves the frontier only once what it produced is stored.

Errors are sorted where they arise (``crawler.redis_errors``):

* a transient one is raised, so the caller retries later with backoff; the
  chunk that failed is sent again as it was, with the sequence number it
  was first sent with, so a commit whose reply was lost (Redis ran it) is
  not applied twice (``commit.lua``);
* any other is caused by one write: the chunk is split in halves until the
  write that fails alone is found. That write is set aside with its reason
  in the dead letters (a request, requeue-able; an item, for the record) and
  everything else commits. One bad entry never stops a node.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from crawler.frontier import BATCH_TAIL, Batch, CommitResult, dead_letter, item_letter
from crawler.localseen import LocalSeen
from crawler.partfrontier import AnyFrontier, PartitionedFrontier
from crawler.redis_errors import is_transient
from crawler.starts import PartitionedStartReports, StartReports

logger = logging.getLogger(__name__)

#: What a commit's counters add to the node's Scrapy stats: the framework's
#: own, and those Scrapy's scheduler and RFPDupeFilter (and scrapy-redis's
#: scheduler, ``/redis``) record, with the same meaning: a request stored in
#: the frontier is enqueued, a duplicate of one seen is filtered.
_STATS = (
    ("crawler/queued", "queued"),
    ("scheduler/enqueued", "queued"),
    ("scheduler/enqueued/redis", "queued"),
    ("crawler/duplicates", "duplicates"),
    ("dupefilter/filtered", "duplicates"),
    ("crawler/items_stored", "items_new"),
    ("crawler/items_already_stored", "items_dup"),
    ("crawler/acked", "acked"),
)


class CommitPipeline:
    """Batches a node's writes and commits them, isolating bad entries."""

    def __init__(
        self,
        frontier: AnyFrontier,
        batch_size: int,
        count: Callable[[str, int], None],
        local_seen: LocalSeen | None = None,
        window: int = 16,
    ) -> None:
        self.frontier = frontier
        self.local_seen = local_seen or LocalSeen(0)
        self.batch_size = batch_size
        self.count = count
        self.batch = Batch()
        #: Chunks cut from earlier batches, not yet known to be applied:
        #: [sequence number once sent (0 before), chunk]. A chunk keeps its
        #: number when sent again, so Redis applies it once.
        self.pending: deque[list[Any]] = deque()
        self._seq = 0
        #: What this node started, reported with each commit (crawler.starts).
        self.starts: StartReports | PartitionedStartReports = StartReports(window)
        if isinstance(frontier, PartitionedFrontier):
            self.starts = PartitionedStartReports(window, len(frontier.parts))
        #: The last successful commit's result (for its backoff version).
        self.last: CommitResult | None = None

    def __len__(self) -> int:
        """Writes not yet applied (a report of started requests counts one)."""
        unsent = int(self.starts.due()) + len(self.frontier.deferred())
        return len(self.batch) + sum(len(chunk) for _, chunk in self.pending) + unsent

    def settled(self) -> bool:
        """Redis has every acknowledgement this node made and its current
        start report (new requests and items may still be on their way)."""
        if self.starts.due():
            return False
        return not any(b.acks or b.raws or any(lid for lid, _ in b.deads) for b in self.batches())

    def batches(self) -> list[Batch]:
        """Every batch not yet written, the open one included."""
        return [chunk for _, chunk in self.pending] + [self.batch, self.frontier.deferred()]

    async def flush(self) -> None:
        """Write everything queued so far; raises only transient errors, and
        then keeps what was not written, in order, for the next flush."""
        due = self.starts.due() or len(self.frontier.deferred())
        if len(self.batch) or (due and not self.pending):
            batch, self.batch = self.batch, Batch()
            self.pending.extend([0, chunk] for chunk in _chunks(batch, self.batch_size))
        while self.pending:
            numbered = self.pending[0]
            try:
                await self._commit(numbered[1], numbered)
            except Exception as exc:
                if is_transient(exc):
                    raise  # sent again as it is, with its number
                self.pending.popleft()
                self.pending.extendleft(reversed(self._split(numbered[1], exc)))
                continue
            self.pending.popleft()

    async def flush_all(self) -> None:
        """Flush until nothing is held back either (a partitioned frontier
        sends some acknowledgements with the next commit): for a node leaving."""
        await self.flush()
        if len(self.frontier.deferred()):
            await self.flush()

    async def _commit(self, chunk: Batch, numbered: list[Any]) -> None:
        """Commit *chunk*; *numbered* ([seq, chunk]) keeps the number it was
        first sent with, so that sending it again cannot apply it twice."""
        if not numbered[0]:
            self._seq += 1
            numbered[0] = self._seq
        report, top = self.starts.report()
        result = await self.frontier.commit(chunk, numbered[0], report)
        self.count("crawler/commits", 1)
        self.starts.applied(top)
        self.local_seen.committed(fp for fp, _, _ in chunk.pushes)
        for stat, field in _STATS:
            self.count(stat, getattr(result, field))
        self.count("crawler/commits_replayed", result.replayed)
        self.last = result

    def _split(self, chunk: Batch, exc: Exception) -> list[list[Any]]:
        """What replaces a chunk Redis refused, each piece numbered afresh
        when first sent (so a piece sent again after a lost reply is still
        applied once): its writes in halves, then its tail (acks, dead
        letters, politeness events); a write that fails alone is set aside
        in the tail, a tail write that fails alone is dropped and counted."""
        writes = _writes(chunk)
        tail = Batch(**{name: list(getattr(chunk, name)) for name in BATCH_TAIL})
        if len(writes) > 1:
            logger.error(
                "Redis refused a commit of %d writes (%s: %s); splitting it to find "
                "the entry that causes it.",
                len(chunk),
                type(exc).__name__,
                exc,
            )
            half = len(writes) // 2
            pieces = [_batch_of(writes[:half]), _batch_of(writes[half:]), tail]
        elif len(writes) == 1 and len(tail):
            pieces = [_batch_of(writes), tail]  # which of the two is it?
        elif len(writes) == 1:
            pieces = [Batch(deads=[("", self._set_aside(*writes[0], exc))])]
        else:
            pieces = self._split_tail(tail, exc)
        return [[0, piece] for piece in pieces if len(piece)]

    def _split_tail(self, tail: Batch, exc: Exception) -> list[Batch]:
        """A refused tail, one write at a time; a single write is dropped."""
        singles = [(name, value) for name in BATCH_TAIL for value in getattr(tail, name)]
        if len(singles) > 1:
            logger.error("Redis refused a commit's acknowledgements (%s); one at a time.", exc)
            return [Batch(**{name: [value]}) for name, value in singles]
        for name, value in singles:
            logger.error("Dropping %s write %r: Redis refused it: %s", name, value, exc)
            self.count("crawler/dropped_writes", 1)
        return []

    def _set_aside(self, kind: str, write: Any, exc: Exception) -> str:
        """The dead letter for one write Redis refused."""
        why = f"{type(exc).__name__}: {exc}"
        node = self.frontier.node
        if kind == "p":
            self.local_seen.refused(write[0])
            self.count("crawler/unstorable_requests", 1)
            logger.error("Dead-lettering a request Redis would not store: %s", why)
            return dead_letter(f"cannot store request: {why}", write[2], node)
        item_id, data = write
        self.count("crawler/unstorable_items", 1)
        logger.error("Setting aside an item Redis would not store: %s", why)
        return item_letter(f"cannot store item: {why}", data, node, item_id)


def _writes(batch: Batch) -> list[tuple[str, Any]]:
    return [("p", p) for p in batch.pushes] + [("i", i) for i in batch.items]


def _batch_of(writes: list[tuple[str, Any]]) -> Batch:
    batch = Batch()
    for kind, value in writes:
        (batch.pushes if kind == "p" else batch.items).append(value)
    return batch


def _chunks(batch: Batch, size: int) -> list[Batch]:
    writes = _writes(batch)
    chunks = [_batch_of(writes[i : i + size]) for i in range(0, len(writes), size)] or [Batch()]
    for name in BATCH_TAIL:
        setattr(chunks[-1], name, getattr(batch, name))
    return chunks
