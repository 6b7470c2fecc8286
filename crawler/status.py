"""A snapshot of a crawl's state for ``scrapy status``, from counters only.

It reads fixed keys (counters, the node hashes) in one pipelined round trip
plus one for the held counts of live nodes; it never scans keys, so it
answers as fast on ten million seen URLs as on ten.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.cluster

from crawler import outcome
from crawler.duestate import due_summary
from crawler.duestate import render as render_due
from crawler.keys import Keys
from crawler.partitions import partition_keys, recorded_tags

COUNTERS = (
    "queued",
    "leased",
    "seen",
    "done",
    "dead",
    "items",
    "items_removed",
    "duplicates",
    "requeued",
    "budget_dropped",
)


def server_time(client: Any, key: str) -> tuple[int, int]:
    """TIME of the server holding *key* (a read-only user may run TIME, not
    scripts; a cluster client must be told which node to ask)."""
    if isinstance(client, redis.cluster.RedisCluster):
        seconds, micros = client.time(target_nodes=client.get_node_from_key(key))
    else:
        seconds, micros = client.time()
    return int(seconds), int(micros)


def snapshot(client: Any, keys: Keys) -> dict[str, Any]:
    """Totals, nodes, rate and time-to-drain of one crawl (all its partitions)."""
    now_s, now_us = server_time(client, keys.stats)
    parts = partition_keys(keys, recorded_tags(client, keys))
    pipe = client.pipeline(transaction=False)
    pipe.type(keys.start_urls)
    pipe.llen(keys.start_urls)
    pipe.zrange(keys.nodes, 0, -1, withscores=True)
    pipe.hgetall(keys.nodeinfo)
    pipe.hgetall(keys.nodebeat)
    pipe.hget(keys.control, "paused")
    pipe.hget(keys.run, "closed")
    for part in parts:
        pipe.hmget(part.stats, list(COUNTERS))
        pipe.hget(part.bloom, "fp_est")
    for part in parts:
        outcome.read_pipe(pipe, part)
    replies = pipe.execute(raise_on_error=False)
    kind, llen, deadlines, infos, beats, paused, closed = replies[:7]
    closed = closed or None  # "" while the run is open
    counted = replies[7 : 7 + 2 * len(parts)]
    dead = outcome.merged_replies(replies[7 + 2 * len(parts) :])
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    totals = {name: 0 for name in COUNTERS}
    for stats in counted[0::2]:
        for name, v in zip(COUNTERS, stats, strict=True):
            totals[name] += int(v or 0)
    fp_est = sum(float(v) for v in counted[1::2] if v)
    totals["in_flight"] = totals.pop("leased")
    # The scripts count each item stored anew in "items" and each one a
    # recrawl took away (a page with fewer items, a page gone) in
    # "items_removed"; one stored again after its removal counts as new. The
    # items stored now are the difference: status said 3 of a page that went
    # from 3 items to 1, where `scrapy export` writes 1.
    totals["items"] = max(0, totals["items"] - totals["items_removed"])
    totals["start_urls"] = llen if kind == b"list" and isinstance(llen, int) else 0
    if kind in (b"set", b"zset"):  # REDIS_START_URLS_AS_SET / _AS_ZSET
        card = client.scard if kind == b"set" else client.zcard
        totals["start_urls"] = int(card(keys.start_urls))
    deadline_of = {node.decode(): score for node, score in deadlines}
    nodes = [_node(node.decode(), raw, beats, deadline_of, now_ms) for node, raw in infos.items()]
    live = [n for n in nodes if n["state"] in ("running", "paused")]
    held = client.pipeline(transaction=False)
    for n in live:
        for part in parts:
            held.hlen(part.held(n["node"]))
    counts = held.execute() if live else []
    for i, n in enumerate(live):
        n["held"] = sum(counts[i * len(parts) : (i + 1) * len(parts)])
    rate = sum(n["pages_per_min"] for n in live)
    return {
        "domains": _merged_domains([_domains(client, part, now_ms) for part in parts]),
        "crawl": keys.name,
        "paused": paused == b"1",
        # A spider's CloseSpider reason closing the current run (every node
        # stops; what is queued waits for nodes started again), or None.
        "closed_by": closed.decode(errors="replace") if isinstance(closed, bytes) else None,
        "dead_letters": dead.dead,
        "dead_reasons": [{"reason": kind, "count": n} for kind, n in dead.reasons],
        "bloom_false_positives_est": round(float(fp_est), 2) if fp_est else None,
        **totals,
        "pages_per_min": round(rate, 1),
        "items_per_min": round(sum(n["items_per_min"] for n in live), 1),
        # None while paused: the last minute's rate says nothing of when a
        # crawl that fetches nothing drains (a paused crawl showed ~1m42s).
        "eta_seconds": round(totals["queued"] / (rate / 60))
        if rate > 0 and paused != b"1"
        else None,
        "recrawl": due_summary(client, parts, now_ms),
        "live_nodes": len(live),
        "nodes": sorted(nodes, key=lambda n: (n["state"] != "running", n["node"])),
    }


# Domains shown in the politeness table, soonest first.
_SHOWN_DOMAINS = 20
_NO_SLOT = 2**53 - 1


def _merged_domains(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The politeness tables of every partition, as one."""
    paused = sorted((d for p in parts for d in p["paused"]), key=lambda d: d["until_in_s"])
    throttled = [d for p in parts for d in p["throttled"]]
    throttled.sort(key=lambda d: (d["until_in_s"] is None, d["until_in_s"] or 0))
    return {
        "paused": paused,
        "parked": sum(p["parked"] for p in parts),
        "throttled": throttled[:_SHOWN_DOMAINS],
    }


def _domains(client: Any, keys: Keys, now_ms: int) -> dict[str, Any]:
    """Domains held back by politeness: paused after 429/503, or waiting for
    their delay or a free concurrency slot, with when they may go again."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.backoffs)
    pipe.zcard(keys.parked)
    pipe.zrangebyscore(keys.parked, now_ms + 1, "+inf", 0, _SHOWN_DOMAINS, withscores=True)
    raw_backoffs, parked, waiting = pipe.execute()
    paused = []
    for domain, value in raw_backoffs.items():
        until, _, level = value.decode().partition("|")
        if int(until) > now_ms:
            paused.append(
                {
                    "domain": domain.decode(),
                    "until_in_s": round((int(until) - now_ms) / 1000, 1),
                    "level": int(level or 0),
                }
            )
    paused.sort(key=lambda d: d["until_in_s"])
    names = [d.decode() for d, _ in waiting]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(keys.park(name))
        pipe.hget(keys.domain_busy, name)
        pipe.hget(keys.crawl_delays, name)
    details = pipe.execute() if names else []
    throttled = []
    for i, (name, (_, score)) in enumerate(zip(names, waiting, strict=True)):
        queued, busy, crawl = details[3 * i : 3 * i + 3]
        throttled.append(
            {
                "domain": name,
                "waiting": int(queued or 0),
                "in_flight": int(busy or 0),
                "until_in_s": None if score >= _NO_SLOT else round((score - now_ms) / 1000, 1),
                "crawl_delay_s": int(crawl) / 1000 if crawl else None,
            }
        )
    return {"paused": paused, "parked": int(parked or 0), "throttled": throttled}


def _node(
    node: str, raw: bytes, beats: dict[bytes, bytes], deadline_of: dict[str, float], now_ms: int
) -> dict[str, Any]:
    try:
        info = json.loads(raw)
    except ValueError:
        info = {}
    beat = int(beats.get(node.encode(), 0) or 0)
    deadline = deadline_of.get(node)
    if info.get("state") == "left":
        state = "left"
    elif deadline is not None and deadline > now_ms:
        state = "paused" if info.get("state") == "paused" else "running"
    else:
        state = "lost"
    return {
        "node": node,
        "host": info.get("host"),
        "pid": info.get("pid"),
        "state": state,
        "heartbeat_age_s": round((now_ms - beat) / 1000, 1) if beat else None,
        "pages": info.get("pages", 0),
        "items": info.get("items", 0),
        "pages_per_min": float(info.get("pages_per_min", 0.0)) if state != "lost" else 0.0,
        "items_per_min": float(info.get("items_per_min", 0.0)) if state != "lost" else 0.0,
        "held": 0,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def render(snap: dict[str, Any], where: str) -> str:
    """The human-readable table."""
    paused = "  (PAUSED)" if snap["paused"] else ""
    lines = [f"crawl {snap['crawl']!r} on {where}{paused}"]
    if snap.get("closed_by"):
        lines.append(
            f"  CLOSED      by a spider's CloseSpider({snap['closed_by']!r}): every node stops; "
            "nodes started again begin a new run with what is queued"
        )
    for key in ("queued", "in_flight", "seen", "done", "dead", "items", "start_urls"):
        lines.append(f"  {key.replace('_', ' '):<11} {snap[key]:>14,}")
    eta = _duration(snap["eta_seconds"])
    lines.append(
        f"  rate        {snap['pages_per_min']:>14,.0f} pages/min, "
        f"{snap['items_per_min']:,.0f} items/min; frontier drains in ~{eta}"
    )
    if snap["budget_dropped"]:
        lines.append(
            f"  dropped     {snap['budget_dropped']:>14,} past their domain's page budget "
            "(CRAWLER_DOMAIN_MAX_PAGES)"
        )
    if snap["dead_reasons"]:
        lines.append(f"  dead letters now {snap['dead_letters']:>10,}; commonest reasons:")
        lines += [f"    {r['count']:>8,} x {r['reason']}" for r in snap["dead_reasons"]]
    if snap["bloom_false_positives_est"] is not None:
        lines.append(
            f"  Bloom seen-set: about {snap['bloom_false_positives_est']:,.1f} new URLs "
            "skipped as false positives so far"
        )
    lines += render_due(snap.get("recrawl"))
    shown = [n for n in snap["nodes"] if n["state"] != "left"]
    left = len(snap["nodes"]) - len(shown)
    lines.append(f"  nodes       {snap['live_nodes']:>14} live, {left} left")
    if shown:
        lines.append(
            f"    {'node':<34} {'host':<16} {'pid':>7} {'state':<8} "
            f"{'beat':>7} {'pages/min':>10} {'items/min':>10} {'held':>5}"
        )
    for n in shown:
        age = "-" if n["heartbeat_age_s"] is None else f"{n['heartbeat_age_s']:.0f}s"
        state = n["state"] if n["state"] != "lost" else f"LOST ({age} ago)"
        lines.append(
            f"    {n['node']:<34} {str(n['host'])[:16]:<16} {n['pid'] or '-':>7} {state:<8} "
            f"{age:>7} {n['pages_per_min']:>10,.0f} {n['items_per_min']:>10,.0f} {n['held']:>5}"
        )
    lines += _render_domains(snap["domains"])
    return "\n".join(lines)


def _clock(in_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(time.time() + in_s))


def _render_domains(domains: dict[str, Any]) -> list[str]:
    lines = []
    if domains["paused"]:
        lines.append(f"  domains paused after 429/503: {len(domains['paused'])}")
        for d in domains["paused"][:_SHOWN_DOMAINS]:
            lines.append(
                f"    {d['domain']:<40} until {_clock(d['until_in_s'])} "
                f"(in {d['until_in_s']:.1f}s, backoff level {d['level']})"
            )
    if domains["parked"]:
        lines.append(
            f"  domains with requests waiting for politeness: {domains['parked']:,}"
            + (" (those waiting now, soonest first:)" if domains["throttled"] else "")
        )
        for d in domains["throttled"]:
            when = (
                "no free slot"
                if d["until_in_s"] is None
                else f"until {_clock(d['until_in_s'])} (in {d['until_in_s']:.1f}s)"
            )
            crawl = f", Crawl-delay {d['crawl_delay_s']:g}s" if d["crawl_delay_s"] else ""
            lines.append(
                f"    {d['domain']:<40} {when}; {d['waiting']:,} waiting, "
                f"{d['in_flight']} in flight{crawl}"
            )
    return lines
