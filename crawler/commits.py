"""The commit pipeline: a node's pending writes, sent to Redis in batches.

The scheduler, middlewares and pipeline append to ``pipeline.batch``; the
worker calls ``flush()``. A flush sends the batch in chunks of at most
``batch_size`` writes, acknowledgements with the last chunk, so a request
leaves the frontier only once what it produced is stored.

Errors are sorted where they arise (``crawler.redis_errors``):

* a transient one puts the unsent writes back and is raised, so the caller
  retries the whole flush later with backoff;
* any other is caused by one write: the chunk is split in halves until the
  write that fails alone is found. That write is set aside with its reason
  in the dead letters (a request, requeue-able; an item, for the record) and
  everything else commits. One bad entry never stops a node.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from crawler.frontier import BATCH_TAIL, Batch, CommitResult, Frontier, dead_letter
from crawler.redis_errors import is_transient

logger = logging.getLogger(__name__)

#: What a commit's counters add to the node's Scrapy stats.
_STATS = (
    ("crawler/queued", "queued"),
    ("crawler/duplicates", "duplicates"),
    ("crawler/items_stored", "items_new"),
    ("crawler/items_already_stored", "items_dup"),
    ("crawler/acked", "acked"),
)


class CommitPipeline:
    """Batches a node's writes and commits them, isolating bad entries."""

    def __init__(
        self, frontier: Frontier, batch_size: int, count: Callable[[str, int], None]
    ) -> None:
        self.frontier = frontier
        self.batch_size = batch_size
        self.count = count
        self.batch = Batch()
        #: The last successful commit's result (for its backoff version).
        self.last: CommitResult | None = None

    def __len__(self) -> int:
        return len(self.batch)

    async def flush(self) -> None:
        """Write everything queued so far; raises only transient errors."""
        if not len(self.batch):
            return
        batch, self.batch = self.batch, Batch()
        try:
            for chunk in _chunks(batch, self.batch_size):
                await self._commit_or_isolate(chunk)
                # Written chunks leave the batch we would restore on failure.
                _drop_chunk(batch, chunk)
        except BaseException:
            _prepend(self.batch, batch)
            raise

    async def _commit(self, chunk: Batch) -> None:
        result = await self.frontier.commit(chunk)
        for stat, field in _STATS:
            self.count(stat, getattr(result, field))
        self.last = result

    async def _commit_or_isolate(self, chunk: Batch) -> None:
        try:
            await self._commit(chunk)
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.error(
                "Redis refused a commit of %d writes (%s: %s); finding the entry that "
                "causes it and setting it aside.",
                len(chunk),
                type(exc).__name__,
                exc,
            )
            await self._isolate(chunk)

    async def _isolate(self, chunk: Batch) -> None:
        """Commit *chunk*'s writes in halves, set aside each that fails alone,
        then its tail (acks, dead letters, politeness events)."""
        tail = Batch(**{name: list(getattr(chunk, name)) for name in BATCH_TAIL})
        await self._bisect(_writes(chunk), tail)
        try:
            await self._commit(tail)
        except Exception as exc:
            if is_transient(exc):
                raise
            await self._tail_one_by_one(tail, exc)

    async def _bisect(self, writes: list[tuple[str, Any]], tail: Batch) -> None:
        """Commit *writes* (("p", push) or ("i", item)); on a permanent error
        split them in halves, down to the one write that fails alone."""
        if not writes:
            return
        try:
            await self._commit(_batch_of(writes))
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(writes) == 1:
                tail.deads.append(("", self._set_aside(*writes[0], exc)))
                return
        half = len(writes) // 2
        await self._bisect(writes[:half], tail)
        await self._bisect(writes[half:], tail)

    def _set_aside(self, kind: str, write: Any, exc: Exception) -> str:
        """The dead letter for one write Redis refused."""
        why = f"{type(exc).__name__}: {exc}"
        node = self.frontier.node
        if kind == "p":
            self.count("crawler/unstorable_requests", 1)
            logger.error("Dead-lettering a request Redis would not store: %s", why)
            return dead_letter(f"cannot store request: {why}", write[2], node)
        item_id, data = write
        self.count("crawler/unstorable_items", 1)
        logger.error("Setting aside an item Redis would not store: %s", why)
        letter = {"reason": f"cannot store item: {why}", "entry": "", "item": data}
        letter.update(kind="item", node=node, time=time.time(), item_id=item_id.hex())
        return json.dumps(letter)

    async def _tail_one_by_one(self, tail: Batch, exc: Exception) -> None:
        """The tail itself was refused: send each of its writes alone and
        drop (with an error) the ones Redis refuses."""
        logger.error("Redis refused a commit's acknowledgements (%s); sending one at a time.", exc)
        for name in BATCH_TAIL:
            for value in getattr(tail, name):
                single = Batch()
                getattr(single, name).append(value)
                try:
                    await self._commit(single)
                except Exception as one:
                    if is_transient(one):
                        raise
                    logger.error("Dropping %s write %r: Redis refused it: %s", name, value, one)
                    self.count("crawler/dropped_writes", 1)


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


def _drop_chunk(batch: Batch, chunk: Batch) -> None:
    del batch.pushes[: len(chunk.pushes)]
    del batch.items[: len(chunk.items)]
    if chunk.acks is batch.acks:
        for name in BATCH_TAIL:
            setattr(batch, name, [])


def _prepend(target: Batch, earlier: Batch) -> None:
    for name in ("pushes", "items", *BATCH_TAIL):
        getattr(target, name)[:0] = getattr(earlier, name)
