"""The shared frontier: async operations on one crawl's keys in Redis.

Each operation is one Lua script (see ``crawler/lua``) or a read, so the
state in Redis is always consistent whatever instant a node dies at.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crawler.exceptions import ConfigError
from crawler.fingerprints import SeenConfig, bloom_hashes, seen_member
from crawler.keys import CRAWLS_KEY, Keys
from crawler.politeness import Policy, held_domain, split_entry
from crawler.scripts import Scripts

#: A pushed request's numbers in a commit (crawler/lua/commit.lua): position
#: in the queues, x, the length of y and of the entry.
_HEAD = struct.Struct(">IIBI")

# How many priority levels one lease call looks at.
_PRIORITY_FANOUT = 8


#: The parts of a Batch other than pushes and items: when a batch is split
#: into chunks, they go with the last one.
BATCH_TAIL = (
    "revisits",  # first: sent one at a time, a revisit goes before its ack
    "acks",
    "raws",
    "deads",
    "starts",
    "unblocks",
    "backoffs",
    "latencies",
)


@dataclass
class Batch:
    """What a node writes in one commit, in the order it was produced."""

    # (fingerprint, or None for dont_filter; priority; entry)
    pushes: list[tuple[bytes | None, int, str]] = field(default_factory=list)
    items: list[tuple[bytes, str]] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    deads: list[tuple[str, str]] = field(default_factory=list)
    # Politeness events: (domain, delay factor, when it was sent: monotonic
    # seconds, the end of the hold its lease put on the domain: Redis ms, 0
    # if none or not known) of requests sent; (domain, that hold's end) of
    # requests finished unsent; (domain, seconds or -1) of 429/503 answers;
    # (domain, latency ms, status was 200) of responses (AutoThrottle).
    starts: list[tuple[str, float, float, int]] = field(default_factory=list)
    unblocks: list[tuple[str, int]] = field(default_factory=list)
    backoffs: list[tuple[str, float]] = field(default_factory=list)
    latencies: list[tuple[str, int, bool]] = field(default_factory=list)
    # Pages due again (crawler.recrawl): (domain, seconds, "<priority>|<entry>",
    # the lease id of the request it was made from, "" for none): stored only
    # while this node holds that lease (commit.lua).
    revisits: list[tuple[str, float, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.pushes)
            + len(self.items)
            + len(self.acks)
            + len(self.raws)
            + len(self.deads)
            + len(self.starts)
            + len(self.unblocks)
            + len(self.backoffs)
            + len(self.latencies)
            + len(self.revisits)
        )


_NOTHING = Batch()

#: A start report waits in a held commit at most a second
#: (crawler.commitwait); one that arrives later than this is timed from its
#: arrival, as before reports carried their start time.
_LATE_REPORT_MS = 5000


@dataclass(frozen=True)
class Leased:
    """What one lease call handed out: (lease id, entry, report its start)."""

    entries: list[tuple[str, bytes, bool]]
    # Lease id -> seconds to wait before sending it (its domain is ready
    # then), for requests leased ahead.
    waits: dict[str, float] = field(default_factory=dict)
    # The scan stopped at its bound with requests left to look at.
    more: bool = False
    # Lease ids whose lease holds their domain until their start is reported
    # (it has a delay; crawler/lua/_polite.lua p_take).
    holds: set[str] = field(default_factory=set)
    # CLOSESPIDER_PAGECOUNT requests were handed out: the crawl closes.
    spent: bool = False
    # (backoff version, Redis's clock in ms), as a commit returns them.
    backoff: tuple[int, int] | None = None


@dataclass(frozen=True)
class CommitResult:
    queued: int
    duplicates: int
    items_new: int
    items_dup: int
    acked: int
    # Changes whenever a domain is paused (429/503); Redis's clock (ms).
    backoff_version: int = 0
    redis_ms: int = 0
    # 1: this commit had been applied already (sent again after a lost reply).
    replayed: int = 0


@dataclass(frozen=True)
class Turn:
    """A download the frontier never handed out asked for its domain's turn
    (``Frontier.reserve``)."""

    wait: float  # seconds to wait before asking again (0: go now)
    held: bool = False  # what it waits for is a leased request's hold (ends sooner)
    # Not None: the hold is this node's own leased request, not sent yet:
    # go now, and send that request this many seconds after this download.
    own_gap: float | None = None
    # Not 0: the turn holds the domain until its start is reported with
    # this hold's end (Redis ms), as a leased request's does.
    hold: int = 0


@dataclass(frozen=True)
class ClusterState:
    queued: int
    leased: int
    pushed: int
    start_urls: int
    # Pages due again later (crawler.recrawl): the crawl is not finished.
    due: int = 0

    @property
    def empty(self) -> bool:
        return self.queued <= 0 and self.leased <= 0 and self.start_urls <= 0 and self.due <= 0


def dead_letter(
    reason: str, entry: str, node: str, url: str | None = None, page: str | None = None
) -> str:
    """A dead letter. One with a *page* (hex: a recrawl's revisit) leads
    with it and a count, which commit.lua reads: the page's next one
    replaces it, counting on."""
    letter: dict[str, Any] = {"page": page, "count": 1} if page else {}
    letter.update(reason=reason, entry=entry, node=node, time=time.time())
    if url is not None:
        letter["url"] = url
    # ASCII: a lone surrogate in a reason or an entry must not make the
    # letter itself unstorable.
    return json.dumps(letter)


def item_letter(reason: str, item: str, node: str, item_id: bytes | None = None) -> str:
    """A dead letter for an item set aside (nothing to requeue: for the record)."""
    letter: dict[str, Any] = {"reason": reason, "entry": "", "item": item, "kind": "item"}
    letter.update(node=node, time=time.time())
    if item_id is not None:
        letter["item_id"] = item_id.hex()
    return json.dumps(letter)


def polite_keys(k: Keys) -> list[str]:
    """The politeness keys, the last KEYS of the scripts that use them
    (crawler/lua/_polite.lua)."""
    return [
        k.parked,
        k.domain_next,
        k.domain_busy,
        k.backoffs,
        k.crawl_delays,
        k.auto_delays,
        k.domain_pages,
    ]


class Frontier:
    """One node's handle on a crawl's shared state."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        node: str,
        seen: SeenConfig | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.node = node
        self.seen = seen or SeenConfig("exact", keys.seen_shards, 1, 0.0001)
        self.policy = policy or Policy(delay=0.0, concurrency=8, jitter=0.5)
        self._policy = self.policy.to_lua()
        self.scripts = Scripts.register(client)
        self.roundtrips = 0
        #: Nodes whose leases held at this node's last lease call or
        #: heartbeat (1 before either).
        self.live_nodes = 1
        #: The reason a node's spider raised CloseSpider with in this run
        #: (crawler.closelimits), as of the last heartbeat; "" if none.
        self.closed = ""
        self._bloom_layers = 0
        #: The domains of the requests in this node's park inbox
        #: (crawler/lua/lease.lua); None: not known, read it first.
        self._inbox: set[str] | None = None
        self._inbox_since = 0.0  # monotonic: when the inbox last filled

    def deferred(self) -> Batch:
        """Writes waiting for the next commit: none (crawler.partfrontier
        holds some back)."""
        return _NOTHING

    async def _rt(self, call: Awaitable[Any]) -> Any:
        """One Redis round trip, counted (the ``crawler/redis_roundtrips`` stat)."""
        self.roundtrips += 1
        return await call

    async def commit(self, batch: Batch, seq: int = 0, began: str = "") -> CommitResult:
        """Check-and-set the seen-set, queue, store items and ack, in one script.

        *seq* > 0 makes it idempotent: this node's commits numbered in the
        order sent, one at a time; sent again with the same number after a
        lost reply, it is not applied twice. *began*: "<id>|<window>", the
        highest lease id of this node's requests that reached the downloader
        and how many more may have started since ("": unchanged)."""
        while True:
            keys, args = self._commit_args(batch, seq, began)
            result = await self._rt(self.scripts.commit(keys=keys, args=args))
            if int(result[0]) >= 0:
                return CommitResult(*(int(x) for x in result))
            if int(result[0]) == -2:
                # A layer this batch needs is allocated in a call of its own.
                layer, size = int(result[1]), int(result[2])
                grow_keys = [self.keys.bloom, self.keys.bloom_layer(layer)]
                await self._rt(self.scripts.bloom_grow(keys=grow_keys, args=[layer, size]))
                continue
            if self.seen.mode != "bloom":
                raise ConfigError(
                    f"crawl {self.keys.name!r} keeps its seen-set as a Bloom filter but this "
                    "process has CRAWLER_SEEN_MODE='exact'; use the crawl's settings."
                )
            # The Bloom filter has (or this batch needs) more layers than we passed.
            self._bloom_layers = max(self._bloom_layers + 1, int(result[1]) - 2)

    def _commit_args(
        self, batch: Batch, seq: int = 0, began: str = ""
    ) -> tuple[list[str], list[Any]]:
        k, seen = self.keys, self.seen
        keys = [k.stats, k.prios, k.items, k.held(self.node), k.dead, k.bloom, k.commit_seqs]
        index: dict[str, int] = {}

        def ref(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)
            return index[name]

        bloom = seen.mode == "bloom"
        # Two spare layer keys let one commit grow the filter.
        layers = [ref(k.bloom_layer(n)) for n in range(1, self._bloom_layers + 3)] if bloom else []
        args: list[Any] = [seq, self.node, began, len(layers), *layers]
        args += [seen.bloom_capacity, seen.bloom_error_rate]
        # Pushes travel as three arguments: the queues (JSON), 13 bytes of
        # numbers per request and its strings concatenated. Redis spends
        # about a microsecond on each argument of a command, more than on
        # the check-and-add itself; parsing numbers from text (JSON) costs it
        # about as much, and the script cuts out only the entries of new
        # requests (a duplicate's is never made a Lua string).
        queues: list[list[Any]] = []  # [queue key index, priority (text)]
        queue_of: dict[int, int] = {}  # priority -> position in queues (from 1)
        heads = bytearray()
        strings: list[bytes] = []
        checked = 0
        shards = seen.shards
        for fp, prio, entry in batch.pushes:
            if fp is None:
                x, y = 0, b""
            elif bloom:
                x, h2 = bloom_hashes(fp)
                y = str(h2).encode()
                checked += 1
            else:
                shard, member = seen_member(fp, shards)
                x = ref(k.seen(shard))
                y = str(member).encode()  # Lua numbers are doubles: int64 goes as text
            q = queue_of.get(prio)
            if q is None:
                queues.append([ref(k.queue(prio)), str(prio)])
                q = queue_of[prio] = len(queues)
            # As redis-py would send it (a lone surrogate raises here, as it
            # did there: the commit is split to find it).
            raw = entry if isinstance(entry, bytes) else entry.encode()
            heads += _HEAD.pack(q, x, len(y), len(raw))
            strings += (y, raw)
        args += (checked, json.dumps(queues, separators=(",", ":")), bytes(heads))
        args.append(b"".join(strings))
        args.append(len(batch.items))
        args.append(ref(k.itemlog) if batch.items else 0)
        for item_id, data in batch.items:
            args += [item_id, data]
        args += [self._policy, len(batch.starts)]
        # How long ago each request was sent, by this node's clock: Redis
        # times the domain's next request from then (a report that waited,
        # crawler.commitwait, costs no pace; the time the call takes to
        # reach Redis only makes the delay longer).
        sent = time.monotonic()
        for domain, factor, started, hold in batch.starts:
            ago = max(0, int((sent - started) * 1000))
            if ago > _LATE_REPORT_MS:
                # Late (a node cut off, a commit sent again after an
                # outage): the domain's hold may have run out meanwhile and
                # another node started one since. Timed from now, as a report
                # without its start time, it never moves that one's delay.
                ago = 0
            args += [domain, round(factor, 4), ago, hold]
        args.append(len(batch.unblocks))
        for domain, hold in batch.unblocks:
            args += [domain, hold]
        args.append(len(batch.backoffs))
        for domain, seconds in batch.backoffs:
            args += [domain, round(seconds, 3)]
        args.append(len(batch.latencies))
        for domain, latency_ms, ok in batch.latencies:
            args += [domain, latency_ms, int(ok)]
        args += [len(batch.acks), *batch.acks, len(batch.raws), *batch.raws]
        args.append(len(batch.deads))
        if batch.deads:
            args.append(ref(k.deadpages))
        for lease_id, letter in batch.deads:
            args += [lease_id, letter]
        args.append(len(batch.revisits))
        if batch.revisits:
            args.append(ref(k.due))
        for _, seconds, value, lease_id in batch.revisits:
            args += [int(seconds * 1000), lease_id, value]
        return keys + polite_keys(k), args

    async def backoffs(self) -> dict[str, int]:
        """Paused domains: domain -> paused until (ms, Redis clock)."""
        raw = await self._rt(self.client.hgetall(self.keys.backoffs))
        return {d.decode(): int(v.split(b"|", 1)[0]) for d, v in raw.items()}

    async def seen_key_names(self) -> list[str]:
        """The keys that hold this crawl's seen-set (for measuring and reset)."""
        k = self.keys
        if self.seen.mode == "exact":
            return [k.seen(shard) for shard in range(self.seen.shards)]
        layers = int(await self._rt(self.client.hget(k.bloom, "layers")) or 0)
        return [k.bloom, *(k.bloom_layer(n) for n in range(1, layers + 1))]

    async def lease(self, count: int, lease_ms: int) -> Leased | None:
        """Lease up to *count* entries whose domains are ready; None if paused."""
        k = self.keys
        inbox = k.parkin(self.node)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(k.prios, 0, _PRIORITY_FANOUT - 1)
            # The domains soonest ready: their park lists are declared.
            pipe.zrange(k.parked, 0, count * 2 + 32)
            if self._inbox is None:  # not known (a reply lost, a restart)
                pipe.lrange(inbox, 0, -1)
            prios, soonest, *rest = await self._rt(pipe.execute())
        known = self._inbox
        if rest:
            known = {held_domain(v) for v in rest[0]}
        names = [p.decode() for p in prios]
        domains = sorted({d.decode() for d in soonest} | (known or set()))
        keys = [k.stats, k.prios, k.nodes, k.held(self.node), k.control, inbox]
        keys += [k.queue(p) for p in names] + [k.park(d) for d in domains] + polite_keys(k)
        args = [self.node, count, lease_ms, len(domains), self._policy, *names]
        self._inbox = None  # until this call's reply says
        flat = await self._rt(self.scripts.lease(keys=keys, args=args))
        if flat == [-1]:
            self._inbox = known  # a paused crawl's call changes nothing
            return None
        if flat == [-2]:
            self._inbox = known
            return Leased([], spent=True)
        self.live_nodes = int(flat[1])
        n = int(flat[4])
        self._inbox = {d.decode() for d in flat[5 : 5 + n]}
        if not self._inbox:
            self._inbox_since = 0.0
        elif not self._inbox_since:
            self._inbox_since = time.monotonic()
        entries = []
        waits = {}
        holds = set()
        for i in range(5 + n, len(flat), 3):
            # wait ms * 4 + holds its domain * 2 + report its start
            lease_id, hold = flat[i].decode(), int(flat[i + 2])
            entries.append((lease_id, flat[i + 1], hold % 2 == 1))
            if hold // 2 % 2:
                holds.add(lease_id)
            if hold >= 4:
                waits[lease_id] = hold // 4 / 1000
        backoff = (int(flat[2]), int(flat[3]))
        return Leased(entries, waits, more=flat[0] == 1, holds=holds, backoff=backoff)

    def inbox_waiting(self) -> bool:
        """This node's last lease call parked requests in its inbox: a call
        must move them to their domains' lists, where every node sees them."""
        return bool(self._inbox)

    def inbox_due(self, wait: float) -> bool:
        """The inbox has waited *wait* seconds for a lease call to move it."""
        return bool(self._inbox) and time.monotonic() - self._inbox_since >= wait

    async def drain_inbox(self, lease_ms: int) -> None:
        """Move the inbox to the park lists (a lease call of no requests)."""
        await self.lease(0, lease_ms)

    async def reserve(
        self, domain: str, factor: float, hold_ms: int, own_holds: Iterable[int] = ()
    ) -> Turn:
        """Ask for *domain*'s next turn for a download the frontier never
        handed out (crawler/lua/reserve.lua): a turn granted holds the
        domain until the download's start is reported, *hold_ms* at most;
        *own_holds*: the ends of the holds this node's leased requests of
        the domain, not sent yet, put on it."""
        keys = [self.keys.stats, *polite_keys(self.keys)]
        args: list[Any] = [self._policy, domain, factor, hold_ms, *own_holds]
        got = await self._rt(self.scripts.reserve(keys=keys, args=args))
        if int(got[1]) == 2:
            return Turn(0.0, False, int(got[2]) / 1000)
        if int(got[1]) == 3:
            return Turn(0.0, hold=int(got[2]))
        return Turn(int(got[0]) / 1000, bool(int(got[1])))

    async def lease_raw(self, count: int, lease_ms: int) -> list[tuple[str, bytes]]:
        """Lease raw seeds from the scrapy-redis style start_urls key (a list,
        set or sorted set), at most ``REDIS_START_URLS_BATCH_SIZE`` at once."""
        k = self.keys
        if k.start_urls_batch:
            count = min(count, k.start_urls_batch)
        keys = [k.stats, k.nodes, k.held(self.node), k.start_urls, k.control]
        flat = await self._rt(self.scripts.lease_raw(keys=keys, args=[self.node, count, lease_ms]))
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def heartbeat(self, lease_ms: int, info: str) -> tuple[bool, bool]:
        """Renew this node's leases (lease_ms 0: it is leaving).

        Returns (known, paused): known is False if the leases had expired
        meanwhile; paused is True while the crawl is paused."""
        k = self.keys
        known, _, paused, live, closed = await self._rt(
            self.scripts.heartbeat(
                keys=[k.nodes, k.nodeinfo, k.nodebeat, k.control, k.run],
                args=[self.node, lease_ms, info],
            )
        )
        self.live_nodes = int(live)
        self.closed = closed.decode("utf-8", "replace") if closed else ""
        return bool(known), bool(paused)

    async def add_stats(self, deltas: dict[str, int | float | str]) -> None:
        """Add this node's stats deltas to the cluster's stats, atomically
        (a value marked ``M``: keep the highest)."""
        args: list[str | int | float] = []
        for name, delta in deltas.items():
            args += [name, delta]
        if args:
            await self._rt(self.scripts.add_stats(keys=[self.keys.clusterstats], args=args))

    async def cluster_stats(self, names: list[str]) -> list[int]:
        """The cluster's sums of these Scrapy stats (``{N}:clusterstats``)."""
        values = await self._rt(self.client.hmget(self.keys.clusterstats, names))
        return [int(float(v)) if v else 0 for v in values]

    async def run_state(self, names: list[str]) -> tuple[dict[Any, Any], ...]:
        """(nodeinfo, nodebeat, the run's record, these Scrapy stats summed)."""
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.nodeinfo)
            pipe.hgetall(k.nodebeat)
            pipe.hgetall(k.run)
            pipe.hmget(k.clusterstats, names or ["-"])
            infos, beats, run, totals = await self._rt(pipe.execute())
        return infos, beats, run, dict(zip(names, totals, strict=False))

    async def new_run(self, record: dict[str, Any]) -> None:
        """Record a new run of the crawl (crawler.closelimits), open: every
        field a run reads is written (no DEL: a node's ACL rules need none)."""
        await self._rt(self.client.hset(self.keys.run, mapping={**record, "closed": ""}))

    async def read_closed(self) -> str:
        """The reason a spider's CloseSpider closed the run with ("": open),
        read now rather than with the next heartbeat."""
        closed = await self._rt(self.client.hget(self.keys.run, "closed"))
        self.closed = closed.decode("utf-8", "replace") if closed else ""
        return self.closed

    async def close_run(self, reason: str) -> None:
        """A spider raised CloseSpider(*reason*): the whole crawl's run closes
        (every node, within a second; crawler.closelimits)."""
        await self._rt(self.client.hset(self.keys.run, "closed", reason))

    async def register(self) -> None:
        """List this crawl in the Redis-wide registry of crawls."""
        await self._rt(self.client.sadd(CRAWLS_KEY, self.keys.name))

    async def reclaim_expired(self, max_deliveries: int) -> tuple[int, int]:
        """Return the work of nodes whose leases expired; (requeued, dead)."""
        k = self.keys
        expired = await self._rt(self.scripts.expired(keys=[k.nodes], args=[16]))
        requeued = dead = 0
        for raw_node in expired:
            node = raw_node.decode()
            if node == self.node:
                continue
            r, d = await self._requeue_node(node, "expired", max_deliveries, None)
            requeued, dead = requeued + max(r, 0), dead + d
        return requeued, dead

    async def held_ids(self) -> list[str]:
        """Lease ids Redis has in this node's held hash."""
        ids = await self._rt(self.client.hkeys(self.keys.held(self.node)))
        return [i.decode() for i in ids]

    async def release_all(self, holds: dict[str, int] | None = None) -> int:
        """Hand back everything this node still holds (when it leaves);
        *holds* as for ``release``."""
        requeued, _ = await self._requeue_node(self.node, "release", 0, None, holds)
        return requeued

    async def release(self, lease_ids: list[str], holds: dict[str, int] | None = None) -> int:
        """Hand back leases this node has not started, uncounted (it stays
        in the cluster's node list). *holds*: lease id -> the end of the hold
        its lease put on its domain (Redis ms), where known."""
        requeued, _ = await self._requeue_node(self.node, "release", 0, lease_ids, holds)
        return requeued

    async def _requeue_node(
        self,
        node: str,
        mode: str,
        max_deliveries: int,
        only: list[str] | None,
        holds: dict[str, int] | None = None,
    ) -> tuple[int, int]:
        k = self.keys
        held, inbox = k.held(node), k.parkin(node)
        values: dict[Any, Any] = {}
        waiting: list[bytes] = []
        if only is None:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(held)
                pipe.lrange(inbox, 0, -1)
                values, waiting = await self._rt(pipe.execute())
        elif only:
            got = await self._rt(self.client.hmget(held, only))
            values = {f.encode(): v for f, v in zip(only, got, strict=True) if v is not None}
        keys = [k.stats, k.prios, k.nodes, held, k.dead, k.start_urls, k.commit_seqs, inbox]
        index: dict[str, int] = {}
        entries: list[str | int | bytes] = []
        domains: set[str] = set()
        # Newest first: each is pushed back at the head of its queue, so the
        # oldest ends up first, as it was taken.
        for lease_id, value in sorted(values.items(), key=lambda kv: -int(kv[0])):
            prio, _, entry = value.partition(b"|")
            idx = 0
            if prio != b"@":
                name = k.queue(prio.decode("latin-1"))
                if name not in index:
                    keys.append(name)
                    index[name] = len(keys)
                idx = index[name]
                domains.add(split_entry(entry)[0])
            entries += [lease_id, idx, (holds or {}).get(lease_id.decode(), 0)]
        domains.update(held_domain(v) for v in waiting)
        first = len(keys) + 1
        keys += [k.park(d) for d in sorted(domains)] + polite_keys(k)
        args: list[Any] = [node, mode, max_deliveries, self._policy, first, len(domains)]
        args.append(int(only is None))
        result = await self._rt(self.scripts.requeue_held(keys=keys, args=[*args, *entries]))
        if node == self.node and only is None:
            self._inbox = set()
        return int(result[0]), int(result[1])

    async def requeue_dead(self, letters: list[tuple[bytes, str, int, int]]) -> int:
        """Move dead letters (as stored, with their "<domain>|<json>" entry,
        priority and, for a recrawled page's, the count of its latest letter
        as read: 0 for others) back."""
        k = self.keys
        keys = [k.dead, k.stats, k.prios, k.deadpages]
        args: list[str | int | bytes] = []
        for raw, entry, prio, count in letters:
            name = k.queue(prio)
            if name not in keys:
                keys.append(name)
            args += [raw, keys.index(name) + 1, prio, entry, count]
        if not args:
            return 0
        return int(await self._rt(self.scripts.requeue_dead(keys=keys, args=args)))

    async def state(self) -> ClusterState:
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(k.stats, ["queued", "leased", "pushed"])
            pipe.type(k.start_urls)
            # The seed key may be a list, a set or a sorted set: two of these
            # three answer WRONGTYPE, the one of its type counts it.
            pipe.llen(k.start_urls)
            pipe.scard(k.start_urls)
            pipe.zcard(k.start_urls)
            pipe.zcard(k.due)
            (queued, leased, pushed), kind, *sizes, due = await self._rt(
                pipe.execute(raise_on_error=False)
            )
        size = dict(zip((b"list", b"set", b"zset"), sizes, strict=True)).get(kind, 0)
        waiting = size if isinstance(size, int) else 0
        due = due if isinstance(due, int) else 0
        return ClusterState(int(queued or 0), int(leased or 0), int(pushed or 0), waiting, due)

    async def move_due(self, limit: int = 500) -> int:
        """Queue the pages due again now (crawler.recrawl); how many."""
        k = self.keys
        got = await self._rt(self.scripts.due_peek(keys=[k.due], args=[limit]))
        if not got:
            return 0
        keys = [k.due, k.prios, k.stats]
        index: dict[bytes, int] = {}
        args: list[Any] = []
        for value in got:
            prio = value.partition(b"|")[0]
            if prio not in index:
                keys.append(k.queue(prio.decode()))
                index[prio] = len(keys)
            args += [value, index[prio]]
        return int(await self._rt(self.scripts.due_move(keys=keys, args=args)))
