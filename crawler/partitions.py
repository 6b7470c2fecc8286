"""A crawl split into partitions, each under its own hash tag.

With ``CRAWLER_PARTITIONS = P`` (P > 1) a crawl's frontier, seen-set,
politeness state, items and dead letters are split into P partitions. A
request's partition follows from its domain (its Scrapy download slot, as
the frontier entry stores it), so a domain's queue, seen-set shard and
politeness keys share one hash slot and every script stays within it. On
Redis Cluster the partitions' tags are chosen so that their slots fall on
different masters: one crawl spreads over all shards.

Partition 0 is the crawl's own tag ``{NAME}``, which also holds what is the
crawl's as a whole (its config, node info, summed Scrapy stats). The others
are ``{NAME~p}``, or on a cluster ``{NAME~p.s}`` with s the first number
whose slot lies on the chosen master. The first process that writes to the
crawl (a node or ``scrapy seed``) records the tags in ``{NAME}:config``;
every other process reads them from there, so a crawl keeps its layout
whatever a later process's setting says.

Lease ids of partition p > 0 read ``"p:<id>"`` outside the frontier; the
scripts keep their numeric ids.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from crawler.keys import Keys

logger = logging.getLogger(__name__)


def partition_of(domain: str, count: int) -> int:
    """The partition of *domain* (a download slot) among *count*."""
    if count <= 1:
        return 0
    return zlib.crc32(domain.encode("utf-8", "surrogatepass")) % count


def partition_keys(keys: Keys, tags: tuple[str, ...]) -> list[Keys]:
    """The key names of each partition (just *keys* for one partition)."""
    if len(tags) <= 1:
        return [keys]
    # Only the first partition leases raw seeds; the others name a key of
    # their own slot in their place.
    return [keys] + [
        dataclasses.replace(keys, part_tag=tag, start_urls=f"{tag}:start_urls") for tag in tags[1:]
    ]


def global_id(part: int, lease_id: str) -> str:
    return lease_id if part == 0 else f"{part}:{lease_id}"


def split_id(lease_id: str) -> tuple[int, str]:
    """(partition, the id its scripts know) of a lease id."""
    part, sep, local = lease_id.partition(":")
    return (int(part), local) if sep else (0, lease_id)


def _masters(client: Any) -> list[tuple[int, int]]:
    """One slot range of each master of a Redis Cluster (its first)."""
    reply = client.execute_command("CLUSTER SLOTS")
    if isinstance(reply, dict):  # redis-py's cluster client parses it
        pairs = [(int(lo), int(hi), str(v.get("primary"))) for (lo, hi), v in reply.items()]
    else:
        pairs = [(int(r[0]), int(r[1]), str(r[2][:2])) for r in reply]
    first: dict[str, tuple[int, int]] = {}
    for lo, hi, master in sorted(pairs):
        first.setdefault(master, (lo, hi))
    return sorted(first.values())


def choose_tags(name: str, count: int, client: Any | None) -> tuple[str, ...]:
    """Tags for *count* partitions; on a cluster (*client* given) spread so
    that partition p lies on master (master of partition 0 + p) mod masters."""
    tags = ["{" + name + "}"]
    if client is None:
        return tuple(tags + ["{" + f"{name}~{p}" + "}" for p in range(1, count)])
    ranges = _masters(client)
    first = key_slot(tags[0].encode())
    home = next((i for i, (lo, hi) in enumerate(ranges) if lo <= first <= hi), 0)
    for p in range(1, count):
        lo, hi = ranges[(home + p) % len(ranges)]
        for s in range(REDIS_CLUSTER_HASH_SLOTS * 8):
            tag = "{" + f"{name}~{p}.{s}" + "}"
            if lo <= key_slot(tag.encode()) <= hi:
                tags.append(tag)
                break
    return tuple(tags)


def recorded_tags(client: Any, keys: Keys) -> tuple[str, ...]:
    """The partition tags a crawl recorded, or () (one partition)."""
    raw = client.hget(keys.config, "partitions")
    return tuple(json.loads(raw)) if raw else ()


def record_tags(client: Any, keys: Keys, count: int, cluster: bool) -> tuple[str, ...]:
    """The crawl's partition tags: recorded ones, or *count* new ones
    (recorded by the first process to write). A crawl keeps the split it
    started with whatever a later process's setting says."""
    recorded = recorded_tags(client, keys)
    if not recorded and count > 1:
        mine = choose_tags(keys.name, count, client if cluster else None)
        client.hsetnx(keys.config, "partitions", json.dumps(mine))
        recorded = recorded_tags(client, keys)
    have = max(len(recorded), 1)
    if count > 1 and count != have:
        logger.warning(
            "Crawl %r is split into %d partitions (recorded in %s), not "
            "CRAWLER_PARTITIONS=%d; it keeps its split (scrapy reset starts it again).",
            keys.name,
            have,
            keys.config,
            count,
        )
    return recorded
