"""The frontier of a crawl split into partitions (``crawler.partitions``).

``PartitionedFrontier`` offers a node what ``Frontier`` offers, over one
``Frontier`` per partition, all on one client (on Redis Cluster, calls to
different partitions go to their shards at once):

* a commit is one call per partition, sent at once: requests by their
  domain, items by their id, politeness events by their domain,
  acknowledgements by the partition of their lease. What a request produced
  is stored before the request is acknowledged: an acknowledgement goes in
  the same call as its request's outputs when they all go to its own
  partition (one script, atomic), else with the next commit, once they are
  stored everywhere. A crash in between leaves the request held; redone,
  its outputs are found stored (the seen-set, items first write wins), so
  nothing is lost or doubled;
* a lease call asks one partition, in turn, skipping for a second those
  found empty;
* heartbeats, reconciling and reclaiming run on every partition.

Each partition keeps its own commit numbers (``commitseq``); a commit sent
again after a lost reply is the same calls, applied once in each partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

from crawler.config import CrawlConfig
from crawler.frontier import Batch, ClusterState, CommitResult, Frontier, Leased, Turn
from crawler.partitions import global_id, partition_of, split_id
from crawler.politeness import domain_name, split_entry

# The parts of a batch that acknowledge leases or report on them.
_TAIL = ("acks", "raws", "starts", "unblocks", "backoffs", "latencies", "revisits")
_ACKS = ("acks", "raws", "deads")
_EVENTS = ("starts", "unblocks", "backoffs", "latencies", "revisits")
# A partition a lease found empty is skipped this long.
_DRY_SECONDS = 1.0


class PartitionedFrontier:
    def __init__(self, parts: list[Frontier]) -> None:
        self.parts = parts
        first = parts[0]
        self.client, self.keys, self.node = first.client, first.keys, first.node
        self.seen, self.policy = first.seen, first.policy
        # The last backoff version each partition's commit returned.
        self._backoffs: dict[int, int] = {}
        # Acknowledgements for the next commit; the calls of the one being
        # sent (seq), kept to send again as they were after a lost reply.
        self._deferred = Batch()
        self._held = Batch()
        self._seq = 0
        self._calls: dict[int, Batch] = {}
        self._reports: dict[int, str] = {}
        # Leasing: the partition to ask next, those found empty lately.
        self._turn = 0
        self._dry: set[int] = set()
        self._dry_until = 0.0
        # Partitions that handed out their share of CLOSESPIDER_PAGECOUNT;
        # until when one that leased nothing is known to still hold requests.
        self._spent: set[int] = set()
        self._waiting_until = 0.0

    @property
    def roundtrips(self) -> int:
        return sum(part.roundtrips for part in self.parts)

    @property
    def live_nodes(self) -> int:
        return max(part.live_nodes for part in self.parts)

    @property
    def closed(self) -> str:
        return self.parts[0].closed  # the run's record is partition 0's

    def part_of(self, domain: str) -> int:
        return partition_of(domain, len(self.parts))

    # -- commits -------------------------------------------------------------

    async def commit(self, batch: Batch, seq: int = 0, began: str = "") -> CommitResult:
        """One call per partition, at once. Acknowledgements whose requests
        produced outputs in another partition wait for the next commit (the
        outputs are stored by then); see ``deferred``."""
        if not seq or seq != self._seq:
            self._calls, self._held = self._compose(batch, began)
            self._seq = seq
        else:
            # Sent again: with the node's start report as it is now (the
            # node takes it as applied), which a replay takes too.
            self._reports = _split_reports(began)
            for p in self._reports:
                self._calls.setdefault(p, Batch())
        order = sorted(self._calls)
        done = await asyncio.gather(
            *(self.parts[p].commit(self._calls[p], seq, self._reports.get(p, "")) for p in order)
        )
        for p, result in zip(order, done, strict=True):
            if not result.replayed:
                self._backoffs[p] = max(self._backoffs.get(p, 0), result.backoff_version)
        self._deferred, self._held, self._seq = self._held, Batch(), 0
        total = _sum(list(done))
        # Changes whenever any partition's does (each only grows).
        return dataclasses.replace(total, backoff_version=sum(self._backoffs.values()))

    def deferred(self) -> Batch:
        """Acknowledgements waiting for the next commit (lease ids as nodes
        know them): a flush must send one even with nothing else to write."""
        return self._deferred

    def _compose(self, batch: Batch, began: str) -> tuple[dict[int, Batch], Batch]:
        """The calls of a commit by partition, and the acknowledgements held
        back: those of a partition other than where the batch's outputs go."""
        outputs, tails = self._route(batch)
        where = set(outputs)
        self._dry -= where  # this node queued requests there
        held, now = Batch(), Batch()
        for name in _ACKS:
            for value in getattr(batch, name):
                lease_id = value[0] if name == "deads" else value
                if name == "deads" and not lease_id:
                    continue  # an output, routed with the others
                p = split_id(lease_id)[0]
                getattr(held if where - {p} else now, name).append(value)
        _, acks = self._route(_merged(now, self._deferred))
        calls = outputs
        for part in (_events(tails), acks):
            for p, extra in part.items():
                _merge_tail(calls.setdefault(p, Batch()), extra)
        self._reports = _split_reports(began)
        for p in self._reports:
            calls.setdefault(p, Batch())
        return calls, held

    def _route(self, batch: Batch) -> tuple[dict[int, Batch], dict[int, Batch]]:
        """(outputs, acknowledgements and events) of *batch* by partition."""
        outs: dict[int, Batch] = defaultdict(Batch)
        tails: dict[int, Batch] = defaultdict(Batch)
        count = len(self.parts)
        for push in batch.pushes:
            outs[self.part_of(split_entry(push[2].encode())[0])].pushes.append(push)
        for item in batch.items:
            q = zlib.crc32(item[0]) % count
            outs[q].items.append(_item_in(q, item))
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
        for name in _EVENTS:
            for event in getattr(batch, name):
                domain = event if isinstance(event, str) else event[0]
                p = self.part_of(domain)
                if name == "revisits" and event[3]:
                    # The lease id as the partition's scripts know it ("" if
                    # the lease is another partition's: stored as before).
                    q, local = split_id(event[3])
                    event = (*event[:3], local if q == p else "")
                getattr(tails[p], name).append(event)
        return dict(outs), dict(tails)

    # -- leases --------------------------------------------------------------

    async def lease(self, count: int, lease_ms: int) -> Leased | None:
        """Lease from one partition per call, in turn, skipping for a
        second those found empty; ``more`` asks the caller to call again
        while another partition may have requests."""
        now = time.monotonic()
        if now >= self._dry_until:
            self._dry.clear()
            self._dry_until = now + _DRY_SECONDS
        count_parts = len(self.parts)
        order = [(self._turn + i) % count_parts for i in range(count_parts)]
        p = next((q for q in order if q not in self._dry), order[0])
        self._turn = (p + 1) % count_parts
        leased = await self.parts[p].lease(count, lease_ms)
        if leased is None:
            return None  # the crawl is paused
        if leased.spent:
            self._spent.add(p)
        if not leased.entries and not leased.more:
            self._dry.add(p)  # a spent partition too: asked again in a second
        entries = [(global_id(p, lid), entry, rep) for lid, entry, rep in leased.entries]
        waits = {global_id(p, lid): wait for lid, wait in leased.waits.items()}
        backoff = None
        if leased.backoff is not None:
            self._backoffs[p] = max(self._backoffs.get(p, 0), leased.backoff[0])
            backoff = (sum(self._backoffs.values()), leased.backoff[1])
        others = any(q not in self._dry for q in order if q != p)
        more = leased.more or (len(entries) < count and others)
        # Spent when some partition handed out its share and none of the
        # others has anything left to hand out (one may run dry first).
        spent = bool(self._spent) and all(q in self._spent or q in self._dry for q in order)
        if spent:
            spent = not await self._still_queued([q for q in order if q not in self._spent])
        holds = {global_id(p, lid) for lid in leased.holds}
        return Leased(entries, waits, more=more, holds=holds, spent=spent, backoff=backoff)

    async def _still_queued(self, parts: list[int]) -> bool:
        """Whether any of *parts* (that leased nothing lately) still holds
        requests: a partition whose domains wait out a delay or a 429/503
        pause leases nothing for a while without having run dry, and its
        share of CLOSESPIDER_PAGECOUNT is not spent. Asked at most once a
        second while the answer is yes."""
        if not parts:
            return False
        now = time.monotonic()
        if now < self._waiting_until:
            return True
        states = await asyncio.gather(*(self.parts[q].state() for q in parts))
        if any(state.queued for state in states):
            self._waiting_until = now + _DRY_SECONDS
            return True
        return False

    def inbox_waiting(self) -> bool:
        return any(part.inbox_waiting() for part in self.parts)

    def inbox_due(self, wait: float) -> bool:
        return any(part.inbox_due(wait) for part in self.parts)

    async def drain_inbox(self, lease_ms: int) -> None:
        waiting = [part for part in self.parts if part.inbox_waiting()]
        await asyncio.gather(*(part.drain_inbox(lease_ms) for part in waiting))

    async def reserve(
        self, domain: str, factor: float, hold_ms: int, own_holds: Iterable[int] = ()
    ) -> Turn:
        return await self.parts[self.part_of(domain)].reserve(domain, factor, hold_ms, own_holds)

    async def lease_raw(self, count: int, lease_ms: int) -> list[tuple[str, bytes]]:
        return await self.parts[0].lease_raw(count, lease_ms)

    async def heartbeat(self, lease_ms: int, info: str) -> tuple[bool, bool]:
        got = await asyncio.gather(*(part.heartbeat(lease_ms, info) for part in self.parts))
        return all(known for known, _ in got), any(paused for _, paused in got)

    async def held_ids(self) -> list[str]:
        got = await asyncio.gather(*(part.held_ids() for part in self.parts))
        return [global_id(p, lid) for p, ids in enumerate(got) for lid in ids]

    async def release(self, lease_ids: list[str], holds: dict[str, int] | None = None) -> int:
        by_part: dict[int, list[str]] = defaultdict(list)
        for lease_id in lease_ids:
            p, local = split_id(lease_id)
            by_part[p].append(local)
        part_holds = _holds_by_part(holds)
        got = await asyncio.gather(
            *(self.parts[p].release(ids, part_holds[p]) for p, ids in by_part.items())
        )
        return sum(got)

    async def release_all(self, holds: dict[str, int] | None = None) -> int:
        part_holds = _holds_by_part(holds)
        got = await asyncio.gather(
            *(part.release_all(part_holds[p]) for p, part in enumerate(self.parts))
        )
        return sum(got)

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
            sum(s.due for s in got),
        )

    async def read_closed(self) -> str:
        return await self.parts[0].read_closed()  # the run's record is partition 0's

    async def move_due(self) -> int:
        moved = await asyncio.gather(*(part.move_due() for part in self.parts))
        return sum(moved)

    async def backoffs(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for part in await asyncio.gather(*(p.backoffs() for p in self.parts)):
            merged.update(part)
        return merged

    async def add_stats(self, deltas: dict[str, int | float | str]) -> None:
        await self.parts[0].add_stats(deltas)

    async def register(self) -> None:
        await self.parts[0].register()

    async def cluster_stats(self, names: list[str]) -> list[int]:
        return await self.parts[0].cluster_stats(names)

    async def run_state(self, names: list[str]) -> tuple[dict[Any, Any], ...]:
        return await self.parts[0].run_state(names)

    async def new_run(self, record: dict[str, Any]) -> None:
        await self.parts[0].new_run(record)

    async def close_run(self, reason: str) -> None:
        await self.parts[0].close_run(reason)

    async def seen_key_names(self) -> list[str]:
        got = await asyncio.gather(*(part.seen_key_names() for part in self.parts))
        return [name for names in got for name in names]


def _merge_tail(out: Batch, tail: Batch) -> None:
    for name in (*_TAIL, "deads"):
        getattr(out, name).extend(getattr(tail, name))


def _merged(a: Batch, b: Batch) -> Batch:
    both = Batch()
    for name in _ACKS:
        getattr(both, name).extend(getattr(a, name) + getattr(b, name))
    return both


def _events(tails: dict[int, Batch]) -> dict[int, Batch]:
    """The politeness events of *tails* (acknowledgements left out)."""
    out = {}
    for p, tail in tails.items():
        events = Batch(**{name: list(getattr(tail, name)) for name in _EVENTS})
        if len(events):
            out[p] = events
    return out


def _holds_by_part(holds: dict[str, int] | None) -> defaultdict[int, dict[str, int]]:
    """Hold ends by lease id (crawler.leases), split by partition, local ids."""
    part_holds: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for lease_id, end in (holds or {}).items():
        p, local = split_id(lease_id)
        part_holds[p][local] = end
    return part_holds


def _item_in(part: int, item: tuple[bytes, str]) -> tuple[bytes, str]:
    """*item* as partition *part* stores it: an item that replaces ("!") or
    removes ("-") one only while its lease is held names the lease as that
    partition knows it, or none (stored as before) when the lease is
    another partition's: one script cannot look at another's leases."""
    item_id, value = item
    if value[:1] not in ("!", "-"):
        return item
    lease, sep, rest = value[1:].partition("|")
    if not lease or not sep:
        return item
    q, local = split_id(lease)
    return item_id, f"{value[0]}{local if q == part else ''}|{rest}"


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
    partitions = config.partitions()
    policy = config.policy
    if len(partitions) > 1 and policy.page_count:
        # Each partition hands out its share (not exact over partitions).
        share = -(-policy.page_count // len(partitions))
        policy = dataclasses.replace(policy, page_count=share)
    parts = [Frontier(client, keys, node, config.seen, policy) for keys in partitions]
    return parts[0] if len(parts) == 1 else PartitionedFrontier(parts)
