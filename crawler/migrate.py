"""Importing a scrapy-redis crawl's state into this framework's crawl.

Order matters. scrapy-redis adds a request's fingerprint to its dupefilter
before it queues the request, so the queued requests' fingerprints are in
the dupefilter too: imported first, they would make those requests look
seen. So the queued requests come first, each checked against (and added
to) the seen-set as any new request is, and the fingerprints after them.
The fingerprints are left out while any queued request could not be
imported (a pickle not allowed, a rejected entry), because importing them
would mark those requests seen for good; ``drop_unread`` imports them anyway.

Every step is idempotent: a request already imported is found seen, a
fingerprint already there stays. A ``dont_filter`` request is not checked
against its URL's fingerprint (Scrapy's rule); its queue entry's own hash
marks it instead, so it too is imported once however often migrate runs.
The scrapy-redis keys are only read.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from scrapy import Request, Spider

from crawler.exceptions import BadEntry, CrawlerError
from crawler.frontier import Batch
from crawler.partfrontier import AnyFrontier
from crawler.politeness import request_entry
from crawler.srstate import (
    Pickled,
    SourceKeys,
    entry_dict,
    fingerprint_pages,
    queue_pages,
    request_from_entry,
    size_of,
)

_PAGE = 1000
_EXAMPLES = 20
_HEX_FP = re.compile(rb"[0-9a-f]{40}")
# The seen-set member of a dont_filter request's queue entry.
_ENTRY_MARK = b"scrapy-redis queue entry\0"


class Rejected(CrawlerError):
    """Raised when a scrapy-redis queue entry cannot be imported."""

    def __init__(self, reason: str, url: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.url = url


@dataclass
class Counts:
    requests: int = 0
    queued: int = 0
    already: int = 0
    pickled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # (url, reason) of the first rejected entries, to show.
    examples: list[tuple[str, str]] = field(default_factory=list)
    fingerprints: int = 0
    fingerprints_new: int = 0
    fingerprints_bad: int = 0
    fingerprints_imported: bool = False
    # (entries before, after) if the queue changed while it was read.
    queue_changed: tuple[int, int] | None = None

    @property
    def unread(self) -> int:
        """Queued requests not imported: their fingerprints would hide them."""
        return self.pickled + sum(self.rejected.values())


@dataclass(frozen=True)
class Options:
    allow_pickle: bool = False
    fingerprints: bool = True
    drop_unread: bool = False


@dataclass(frozen=True)
class EntryReader:
    """Turns scrapy-redis queue entries into this crawl's frontier pushes."""

    spider: Spider
    fingerprinter: Any
    # CRAWLER_REQUEST_CLASSES
    classes: frozenset[str]
    allow_pickle: bool

    def push(self, raw: bytes) -> tuple[bytes, int, str]:
        """(seen-set key, priority, frontier entry) of one entry. Raises
        Pickled, or Rejected with the reason."""
        url = ""
        try:
            d = entry_dict(raw, self.allow_pickle)
            url = d["url"]
            request = request_from_entry(d, self.spider, self.classes)
            entry = request_entry(request, self.spider)
        except BadEntry as exc:
            raise Rejected(str(exc), url) from None
        except (ValueError, TypeError) as exc:
            raise Rejected(f"cannot be stored: {exc}", url) from None
        return self._mark(request, raw), request.priority, entry

    def _mark(self, request: Request, raw: bytes) -> bytes:
        if request.dont_filter:
            return hashlib.sha1(_ENTRY_MARK + raw).digest()
        return bytes(self.fingerprinter.fingerprint(request))


class Migration:
    """Imports one spider's scrapy-redis state through a frontier."""

    def __init__(
        self, frontier: AnyFrontier, source: SourceKeys, reader: EntryReader, options: Options
    ) -> None:
        self.frontier = frontier
        self.source = source
        self.reader = reader
        self.options = options
        self.counts = Counts()

    async def run(self) -> Counts:
        await self.import_requests()
        opts = self.options
        if opts.fingerprints and (opts.drop_unread or not self.counts.unread):
            await self.import_fingerprints()
        return self.counts

    async def import_requests(self) -> None:
        counts = self.counts
        client = self.frontier.client
        _, before = await size_of(client, self.source.queue)
        await self._import_queue()
        _, after = await size_of(client, self.source.queue)
        # scrapy-redis pops what it takes: a spider still running changes the queue.
        counts.queue_changed = (before, after) if before != after else None

    async def _import_queue(self) -> None:
        counts = self.counts
        async for page in queue_pages(self.frontier.client, self.source, _PAGE):
            batch = Batch()
            for raw in page:
                counts.requests += 1
                try:
                    batch.pushes.append(self.reader.push(raw))
                except Pickled:
                    counts.pickled += 1
                except Rejected as exc:
                    counts.rejected[exc.reason] += 1
                    if len(counts.examples) < _EXAMPLES:
                        counts.examples.append((exc.url, exc.reason))
            if batch.pushes:
                result = await self.frontier.commit(batch)
                counts.queued += result.queued
                counts.already += result.duplicates

    async def import_fingerprints(self) -> None:
        counts = self.counts
        async for page in fingerprint_pages(self.frontier.client, self.source, _PAGE):
            batch = Batch()
            for member in page:
                counts.fingerprints += 1
                if _HEX_FP.fullmatch(member) is None:
                    counts.fingerprints_bad += 1
                    continue
                # An empty entry marks the fingerprint seen without queuing anything.
                batch.pushes.append((bytes.fromhex(member.decode()), 0, ""))
            if batch.pushes:
                counts.fingerprints_new += await self._mark_seen(batch)
        counts.fingerprints_imported = True

    async def _mark_seen(self, batch: Batch) -> int:
        """Mark *batch*'s fingerprints seen; how many were new. A crawl split
        into partitions keeps a URL's fingerprint in its domain's partition,
        and a scrapy-redis fingerprint does not say its domain: each goes to
        every partition (routed by its empty entry's domain, all went to the
        first, and the nodes fetched again every page scrapy-redis had
        fetched of the others' domains). New: the fewest any partition took
        (the partition of a one-domain crawl's domain: as with one), which
        is also what the crawl's ``seen`` counter gets, not a count per
        partition."""
        parts = getattr(self.frontier, "parts", None)
        if not parts or len(parts) == 1:
            result = await self.frontier.commit(batch)
            return len(batch.pushes) - result.duplicates
        new: int | None = None
        for part in parts:
            result = await part.commit(batch)
            fresh = len(batch.pushes) - result.duplicates
            new = fresh if new is None else min(new, fresh)
            if fresh:
                await part.client.hincrby(part.keys.stats, "seen", -fresh)
        if new:
            await parts[0].client.hincrby(parts[0].keys.stats, "seen", new)
        return new or 0
