"""The dashboard's domain table: the top domains by queued requests, with
what holds them back (politeness, a pause after 429/503) and their
robots.txt state.

Queued requests are counted exactly where they wait per domain (the park
lists) and from a bounded sample of the head of the priority queues, so the
table costs the same on ten million queued URLs as on ten.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from crawler.keys import Keys
from crawler.partitions import partition_of
from crawler.politeness import split_entry

# Entries read from the head of the priority queues, per partition.
QUEUE_SAMPLE = 2000
SHOWN = 20
_PARKED_READ = 200
_ROBOTS_STATE = {b"B": "fetched", b"E": "failed (all allowed)", b"F": "being fetched"}
# The scheme and host[:port] of the URL an entry's request JSON starts with.
_URL_ORIGIN = re.compile(rb'\{"url":"([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#"\\]*)')
# Origins (a robots.txt each) remembered per domain.
_ORIGINS_KEPT = 4


def _note_origin(origins: dict[str, set[str]], domain: str, body: bytes) -> None:
    found = _URL_ORIGIN.match(body)
    if found is not None:
        kept = origins.setdefault(domain, set())
        if len(kept) < _ORIGINS_KEPT:
            kept.add(found.group(1).decode("utf-8", "replace"))


def queued_by_domain(
    client: Any, keys: Keys, origins: dict[str, set[str]] | None = None
) -> tuple[Counter[str], int]:
    """(domain -> queued requests seen, entries sampled from the queues);
    *origins* gets each domain's ``scheme://host[:port]`` seen (its
    robots.txt keys)."""
    origins = {} if origins is None else origins
    counts: Counter[str] = Counter()
    sampled = 0
    for prio in client.zrange(keys.prios, 0, 9):
        left = QUEUE_SAMPLE - sampled
        if left <= 0:
            break
        for entry in client.lrange(keys.queue(prio.decode()), 0, left - 1):
            domain, body = split_entry(entry)
            counts[domain] += 1
            _note_origin(origins, domain, body)
            sampled += 1
    parked = [d.decode() for d in client.zrange(keys.parked, 0, _PARKED_READ - 1)]
    pipe = client.pipeline(transaction=False)
    for name in parked:
        pipe.llen(keys.park(name))
        pipe.lindex(keys.park(name), 0)
    replies = pipe.execute() if parked else []
    for name, n, head in zip(parked, replies[0::2], replies[1::2], strict=True):
        counts[name] += int(n or 0)
        if head:  # "<prio>|<entry>"
            _note_origin(origins, name, split_entry(head.partition(b"|")[2])[1])
    return counts, sampled


def robots_state(client: Any, keys: Keys, domain: str, origins: Iterable[str] = ()) -> str:
    """What the cluster knows of *domain*'s robots.txt: of its *origins*
    (``scheme://host:port`` of its queued requests), then http and https on
    the default ports."""
    sites = sorted(set(origins)) + [f"{s}://{domain}" for s in ("https", "http")]
    pipe = client.pipeline(transaction=False)
    for site in dict.fromkeys(sites):
        pipe.get(keys.robots(site))
    for value in pipe.execute():
        if value:
            return _ROBOTS_STATE.get(value[:1], "unknown")
    return "none cached"


def in_flight_by_domain(client: Any, parts: list[Keys]) -> Counter[str]:
    """domain -> requests leased and not finished, over every partition."""
    busy: Counter[str] = Counter()
    for keys in parts:
        for name, value in client.hgetall(keys.domain_busy).items():
            # "\0" is a filler field (see crawler.keys).
            if name != b"\0" and int(value or 0) > 0:
                busy[name.decode()] += int(value)
    return busy


def domain_table(client: Any, parts: list[Keys], politeness: dict[str, Any]) -> dict[str, Any]:
    """Top domains by queued requests, in flight, paused and throttled ones;
    *politeness* is ``scrapy status``'s ``domains`` of the same crawl."""
    queued: Counter[str] = Counter()
    origins: dict[str, set[str]] = {}
    sampled = 0
    for keys in parts:
        counts, n = queued_by_domain(client, keys, origins)
        queued.update(counts)
        sampled += n
    busy = in_flight_by_domain(client, parts)
    paused = {d["domain"]: d for d in politeness["paused"]}
    throttled = {d["domain"]: d for d in politeness["throttled"]}
    names = sorted(set(queued) | set(busy) | set(paused), key=lambda d: (-queued[d], d))
    rows = []
    for name in names[:SHOWN]:
        keys = parts[partition_of(name, len(parts))] if len(parts) > 1 else parts[0]
        rows.append(
            {
                "domain": name or "(none)",
                "queued": queued[name],
                "in_flight": busy.get(name, 0),
                "backoff_until_in_s": paused[name]["until_in_s"] if name in paused else None,
                "throttled_until_in_s": throttled.get(name, {}).get("until_in_s"),
                "robots": robots_state(client, keys, name, origins.get(name, ())) if name else "-",
            }
        )
    return {"top": rows, "queue_sampled": sampled, "sample_limit": QUEUE_SAMPLE}
