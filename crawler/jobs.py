"""Crawl jobs: named crawls side by side, listed with their state
(``scrapy crawls``), and a finished crawl's keys expiring after
``CRAWLER_CRAWL_TTL`` seconds.

Several crawls of one spider run side by side under their own names
(``CRAWLER_CRAWL_NAME``, so ``{NAME}`` tags every key). When the whole
crawl is finished and ``CRAWLER_CRAWL_TTL`` is set, the last node to leave
sets every key of the crawl (found as ``scrapy reset`` finds them) to expire
that long after, at one instant; a node that finds the crawl expiring makes
its keys persistent again first, so a crawl started again before it expires
keeps everything it had (``scrapy seed`` alone does not).
"""

from __future__ import annotations

import logging
from typing import Any

from crawler.keys import Keys
from crawler.status import server_time

logger = logging.getLogger(__name__)

_CHUNK = 1000


def crawl_keys(client: Any, keys: Keys, scan: bool = True) -> list[str]:
    """Every key of the crawl, found from the crawl's own indexes; only the
    shared robots.txt copies and the time series (which expire anyway) are
    found by SCAN, and left out with *scan* False."""
    names = [
        keys.prios,
        keys.nodes,
        keys.nodeinfo,
        keys.nodebeat,
        keys.control,
        keys.clusterstats,
        keys.run,
        keys.items,
        keys.itemlog,
        keys.export,
        keys.trimmed,
        keys.stats,
        keys.dead,
        keys.deadpages,
        keys.due,
        keys.commit_seqs,
        keys.config,
        keys.start_urls,
    ]
    names += [keys.queue(p.decode()) for p in client.zrange(keys.prios, 0, -1)]
    nodes = {n.decode() for n in client.zrange(keys.nodes, 0, -1)}
    nodes |= {n.decode() for n in client.hkeys(keys.nodeinfo)}
    names += [keys.held(n) for n in sorted(nodes)]
    names += [keys.parkin(n) for n in sorted(nodes)]
    if not scan:  # found by SCAN below otherwise, with those of nodes gone
        names += [keys.series(n) for n in sorted(nodes)]
    names += [keys.seen(shard) for shard in range(keys.seen_shards)]
    layers = int(client.hget(keys.bloom, "layers") or 0)
    names += [keys.bloom, *(keys.bloom_layer(n) for n in range(1, layers + 1))]
    names += [
        keys.parked,
        keys.domain_next,
        keys.domain_busy,
        keys.backoffs,
        keys.crawl_delays,
        keys.site_crawl_delays,
        keys.auto_delays,
        keys.domain_pages,
    ]
    names += [keys.park(d.decode()) for d in client.zrange(keys.parked, 0, -1)]
    # robots.txt copies and the dashboard's time series (crawler.timeseries)
    # expire on their own; the crawl's are found by name.
    for pattern in (keys.robots("*"), f"{keys.tag}:ts:*") if scan else ():
        names += [k.decode() for k in client.scan_iter(match=pattern, count=1000)]
    return names


def all_keys(client: Any, parts: list[Keys]) -> list[str]:
    """Every key of a crawl over its partitions but those that expire anyway
    (no SCAN: a node's ACL user may not run it)."""
    return [name for part in parts for name in crawl_keys(client, part, scan=False)]


def expire_crawl(client: Any, parts: list[Keys], ttl: float, node: str) -> int | None:
    """Set every key of the crawl to expire *ttl* seconds from now, all at
    one instant (by the server's clock); how many exist. None, and nothing
    set, if a node other than *node* is live in the crawl: one still
    leaving (the last to leave sets it) or one that joined since."""
    seconds, micros = server_time(client, parts[0].stats)
    now_ms = seconds * 1000 + micros // 1000
    live = client.zrangebyscore(parts[0].nodes, now_ms, "+inf")
    if any(n.decode() != node for n in live):
        return None
    names, found = all_keys(client, parts), 0
    at = now_ms + max(int(ttl * 1000), 1)
    for start in range(0, len(names), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + _CHUNK]:
            pipe.pexpireat(name, at)
        found += sum(bool(x) for x in pipe.execute())
    return found


def persist_if_expiring(client: Any, parts: list[Keys]) -> bool:
    """If the crawl's keys are set to expire (a finished crawl with a TTL),
    make them persistent again; whether they were."""
    if int(client.pttl(parts[0].stats)) < 0:
        return False
    names = all_keys(client, parts)
    for start in range(0, len(names), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + _CHUNK]:
            pipe.persist(name)
        pipe.execute()
    logger.info("Crawl %r was set to expire; its keys are kept again.", parts[0].name)
    return True


def crawl_state(snap: dict[str, Any]) -> str:
    """A crawl's state from its ``crawler.status.snapshot``."""
    due = (snap.get("recrawl") or {}).get("due_total")  # pages to revisit later
    pending = snap["queued"] or snap["in_flight"] or snap["start_urls"] or due
    if snap["live_nodes"]:
        return "paused" if snap["paused"] else "running"
    if not snap["nodes"]:
        return "new" if pending else "empty"
    if pending and snap.get("closed_by"):
        return "closed"  # by a spider's CloseSpider: the run is over
    return "stopped" if pending else "finished"
