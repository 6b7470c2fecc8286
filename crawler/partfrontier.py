"""The frontier of a crawl split into partitions (``crawler.partitions``).

``PartitionedFrontier`` offers a node what ``Frontier`` offers, over one
``Frontier`` per partition, all on one client (on Redis Cluster, calls to
different partitions go to their shards at once):

* a commit is split by partition: requests by their domain, items by their
  id, politeness events by their domain, acknowledgements by the partition
  of their lease. What a request produced is stored before the request is
  acknowledged, in every partition: first the outputs of every partition
  (at once), then the acknowledgements (at once). A crash between the two
  leaves the requests held; redone, their outputs are found stored (the
  seen-set, items first write wins), so nothing is lost or doubled;
* a lease call asks every partition for its share, at once;
* heartbeats, reconciling and reclaiming run on every partition.

Each partition keeps its own commit numbers (``commitseq``): commit n of
the node is 2n (outputs) and 2n+1 (acknowledgements) there, so one sent
again after a lost reply is applied once in each partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import zlib
from collections import defaultdict
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

from crawler.config import CrawlConfig
from crawler.frontier import Batch, ClusterState, CommitResult, Frontier, Leased
from crawler.partitions import global_id, partition_of, split_id
from crawler.politeness import domain_name, split_entry

# The parts of a batch that acknowledge leases or report on them.
_TAIL = ("acks", "raws", "starts", "unblocks", "backoffs", "latencies")


class PartitionedFrontier:
    def __init__(self, parts: list[Frontier]) -> None:
        self.parts = parts
        first = parts[0]
        self.client, self.keys, self.node = first.client, first.keys, first.node
        self.seen, self.policy = first.seen, first.policy
        # The last backoff version each partition's commit returned.
        self._backoffs: dict[int, int] = {}

    @property
    def roundtrips(self) -> int:
        return sum(part.roundtrips for part in self.parts)

    def part_of(self, domain: str) -> int:
        return partition_of(domain, len(self.parts))

    # -- commits -------------------------------------------------------------

    async def commit(self, batch: Batch, seq: int = 0, began: str = "") -> CommitResult:
        outputs, tails = self._route(batch)
        reports = _split_reports(began)
        for p in reports:
            tails.setdefault(p, Batch())
        if len(outputs) == 1:
            # Outputs in one partition: its acknowledgements go with them.
            ((p, out),) = outputs.items()
            _merge_tail(out, tails.pop(p, Batch()))
        waves = [wave for wave in (outputs, tails) if wave]
        # A partition's start report goes with its last call.
        last = {p: n for n, wave in enumerate(waves) for p in wave}
        results: list[CommitResult] = []
        for n, wave in enumerate(waves):
            sub = seq * 2 + n if seq else 0
            order = sorted(wave)
            calls = [
                self.parts[p].commit(wave[p], sub, reports.get(p, "") if last[p] == n else "")
                for p in order
            ]
            done = await asyncio.gather(*calls)
            for p, result in zip(order, done, strict=True):
                if not result.replayed:
                    self._backoffs[p] = max(self._backoffs.get(p, 0), result.backoff_version)
            results += done
        total = _sum(results)
        # Changes whenever any partition's does (each only grows).
        return dataclasses.replace(total, backoff_version=sum(self._backoffs.values()))

    def _route(self, batch: Batch) -> tuple[dict[int, Batch], dict[int, Batch]]:
        """(outputs, acknowledgements and events) of *batch* by partition."""
        outs: dict[int, Batch] = defaultdict(Batch)
        tails: dict[int, Batch] = defaultdict(Batch)
        count = len(self.parts)
        for push in batch.pushes:
            outs[self.part_of(split_entry(push[2].encode())[0])].pushes.append(push)
        for item in batch.items:
            outs[zlib.crc32(item[0]) % count].items.append(item)
        for lease_id, letter in batch.deads:
            if lease_id:
                p, local = split_id(lease_id)
                tails[p].deads.append((local, letter))
            else:
                outs[self.part_of(_letter_domain(letter))].deads.append((lease_id, letter))
        for name in ("acks", "raws"):
            for lease_id in getattr(batch, name):
                p, local = split_id(lease_id)
                getattr(tails[p], name).append(local)
        for name in ("starts", "unblocks", "backoffs", "latencies"):
            for event in getattr(batch, name):
                domain = event if isinstance(event, str) else event[0]
                getattr(tails[self.part_of(domain)], name).append(event)
        return dict(outs), dict(tails)

    # -- leases --------------------------------------------------------------

    async def lease(self, count: int, lease_ms: int) -> Leased | None:
        share = -(-count // len(self.parts))
        got = await asyncio.gather(*(part.lease(share, lease_ms) for part in self.parts))
        if any(leased is None for leased in got):
            return None  # the crawl is paused
        entries = []
        more = False
        for p, leased in enumerate(got):
            assert leased is not None
            entries += [(global_id(p, lid), entry, rep) for lid, entry, rep in leased.entries]
            # A partition that gave its whole share may have more.
            more = more or leased.more or len(leased.entries) >= share
        return Leased(entries, more=more and len(entries) < count)

    async def lease_raw(self, count: int, lease_ms: int) -> list[tuple[str, bytes]]:
        return await self.parts[0].lease_raw(count, lease_ms)

    async def heartbeat(self, lease_ms: int, info: str) -> tuple[bool, bool]:
        got = await asyncio.gather(*(part.heartbeat(lease_ms, info) for part in self.parts))
        return all(known for known, _ in got), any(paused for _, paused in got)

    async def held_ids(self) -> list[str]:
        got = await asyncio.gather(*(part.held_ids() for part in self.parts))
        return [global_id(p, lid) for p, ids in enumerate(got) for lid in ids]

    async def release(self, lease_ids: list[str]) -> int:
        by_part: dict[int, list[str]] = defaultdict(list)
        for lease_id in lease_ids:
            p, local = split_id(lease_id)
            by_part[p].append(local)
        got = await asyncio.gather(*(self.parts[p].release(ids) for p, ids in by_part.items()))
        return sum(got)

    async def release_all(self) -> int:
        return sum(await asyncio.gather(*(part.release_all() for part in self.parts)))

    async def reclaim_expired(self, max_deliveries: int) -> tuple[int, int]:
        got = await asyncio.gather(*(p.reclaim_expired(max_deliveries) for p in self.parts))
        return sum(r for r, _ in got), sum(d for _, d in got)

    # -- the crawl as a whole ------------------------------------------------

    async def state(self) -> ClusterState:
        got = await asyncio.gather(*(part.state() for part in self.parts))
        return ClusterState(
            sum(s.queued for s in got),
            sum(s.leased for s in got),
            sum(s.pushed for s in got),
            got[0].start_urls,
        )

    async def backoffs(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for part in await asyncio.gather(*(p.backoffs() for p in self.parts)):
            merged.update(part)
        return merged

    async def add_stats(self, deltas: dict[str, int | float]) -> None:
        await self.parts[0].add_stats(deltas)

    async def register(self) -> None:
        await self.parts[0].register()

    async def seen_key_names(self) -> list[str]:
        got = await asyncio.gather(*(part.seen_key_names() for part in self.parts))
        return [name for names in got for name in names]


def _merge_tail(out: Batch, tail: Batch) -> None:
    for name in _TAIL:
        setattr(out, name, getattr(tail, name))
    out.deads += tail.deads


def _letter_domain(letter: str) -> str:
    """The domain a dead letter's request belongs to (its URL's host)."""
    try:
        url = json.loads(letter).get("url") or ""
        return domain_name(urlsplit(str(url)).hostname)
    except (ValueError, AttributeError):
        return ""


def _split_reports(began: str) -> dict[int, str]:
    """Start reports by partition: "p:<id>|<window>,..." (crawler.starts)."""
    reports = {}
    for report in filter(None, began.split(",")):
        p, local = split_id(report)
        reports[p] = local
    return reports


def _sum(results: list[CommitResult]) -> CommitResult:
    """The counters of the calls of one commit, added up."""
    total = {f.name: 0 for f in fields(CommitResult)}
    for result in results:
        for name in total:
            total[name] += getattr(result, name)
    total["redis_ms"] = max((r.redis_ms for r in results), default=0)
    # Applied before only if every call of it was (sent again after a lost reply).
    total["replayed"] = min((r.replayed for r in results), default=0)
    return CommitResult(**total)


#: A node's frontier, whole or partitioned.
AnyFrontier = Frontier | PartitionedFrontier


def make_frontier(client: Any, config: CrawlConfig, node: str) -> AnyFrontier:
    """The node's frontier: of its one partition, or of all of them."""
    parts = [
        Frontier(client, keys, node, config.seen, config.policy) for keys in config.partitions()
    ]
    return parts[0] if len(parts) == 1 else PartitionedFrontier(parts)
