"""What ``scrapy status`` shows of a recrawl (crawler.recrawl): pages due
now, within the hour and within the day, how old the crawled pages are, and
the share of revisits that found a change."""

from __future__ import annotations

import json
from typing import Any

from crawler.keys import Keys

_HOUR, _DAY = 3_600_000, 86_400_000
# The pages due soonest, whose age is read (the oldest fetched, at one interval).
_AGE_SAMPLE = 100
_STATS = ("recrawl/revisits", "recrawl/changed", "recrawl/not_modified")


def due_summary(client: Any, parts: list[Keys], now_ms: int) -> dict[str, Any] | None:
    """The recrawl figures of a crawl; None when nothing is due ever."""
    pipe = client.pipeline(transaction=False)
    for part in parts:
        pipe.zcard(part.due)
        pipe.zcount(part.due, "-inf", now_ms)
        pipe.zcount(part.due, "-inf", now_ms + _HOUR)
        pipe.zcount(part.due, "-inf", now_ms + _DAY)
        pipe.zrange(part.due, 0, _AGE_SAMPLE - 1, withscores=True)
    pipe.hmget(parts[0].clusterstats, list(_STATS))
    *replies, counted = pipe.execute()
    total, now, hour, day = (sum(replies[i::5]) for i in range(4))
    if not total:
        return None
    ages = []
    for soonest in replies[4::5]:
        ages += _ages(soonest, now_ms)
    revisits, changed, not_modified = (int(v or 0) for v in counted)
    return {
        "due_total": total,
        "due_now": now,
        "due_hour": hour,
        "due_day": day,
        "oldest_page_age_s": round(max(ages) / 1000) if ages else None,
        "revisits": revisits,
        "revisits_changed": changed,
        "revisits_not_modified": not_modified,
        "changed_share": round(changed / revisits, 3) if revisits else None,
    }


def _ages(soonest: list[tuple[bytes, float]], now_ms: int) -> list[int]:
    """Ages (ms) of the pages due soonest: due time less their interval."""
    ages = []
    for member, due in soonest:
        interval = _interval(member)
        if interval is not None:
            ages.append(max(0, now_ms - int(due - interval * 1000)))
    return ages


def _interval(value: bytes | None) -> float | None:
    """The interval (s) a stored revisit ("<prio>|<deliveries>|<domain>|<json>") carries."""
    if not value:
        return None
    try:
        request = json.loads(value.split(b"|", 3)[3])
        return float(request["meta"]["crawler_recrawl"]["i"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def render(summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return []
    age = summary["oldest_page_age_s"]
    share = summary["changed_share"]
    return [
        f"  recrawl     {summary['due_total']:>14,} pages to revisit: {summary['due_now']:,} "
        f"due now, {summary['due_hour']:,} within the hour, {summary['due_day']:,} "
        "within the day",
        f"              oldest page {'-' if age is None else f'{age:,}s'} old; "
        f"{summary['revisits']:,} revisits, "
        f"{'-' if share is None else f'{share:.0%}'} found a change "
        f"({summary['revisits_not_modified']:,} answered 304)",
    ]
