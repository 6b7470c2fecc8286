"""What the dashboard's JSON API answers, read with a synchronous client.

Totals, rates and nodes are ``scrapy status --json``'s own snapshot
(``crawler.status.snapshot``), so the page and the command always agree.
"""

from __future__ import annotations

from typing import Any

from scrapy.settings import Settings

from crawler.commands.deadletters import letter_url, read_letters
from crawler.config import crawl_keys
from crawler.dashboard.domains import domain_table
from crawler.dashboard.series import crawl_series
from crawler.keys import CRAWLS_KEY, Keys
from crawler.partitions import partition_keys, recorded_tags
from crawler.status import snapshot

# Examples shown per dead-letter reason.
EXAMPLES = 3
# Dead letters read per partition for grouping (the newest ones).
LETTERS_READ = 5000


def crawl_names(client: Any) -> list[str]:
    return sorted(n.decode() for n in client.smembers(CRAWLS_KEY))


def crawl_parts(client: Any, settings: Settings, name: str) -> list[Keys]:
    """The key names of every partition of crawl *name*."""
    keys = crawl_keys(settings, name)
    return partition_keys(keys, recorded_tags(client, keys))


def overview(client: Any, settings: Settings) -> list[dict[str, Any]]:
    """``scrapy status --json`` of every crawl in this Redis."""
    return [snapshot(client, crawl_keys(settings, name)) for name in crawl_names(client)]


def detail(client: Any, settings: Settings, name: str) -> dict[str, Any] | None:
    """One crawl: its status snapshot, domains, dead letters and charts;
    None if no crawl of that name is listed in this Redis."""
    if name not in crawl_names(client):
        return None
    keys = crawl_keys(settings, name)
    snap = snapshot(client, keys)
    parts = partition_keys(keys, recorded_tags(client, keys))
    return {
        "status": snap,
        "domains": domain_table(client, parts, snap["domains"]),
        "dead_letters": dead_letter_groups(client, parts),
        "series": crawl_series(client, keys, [n["node"] for n in snap["nodes"]]),
    }


def dead_letter_groups(client: Any, parts: list[Keys]) -> list[dict[str, Any]]:
    """Dead letters grouped by reason, commonest first, with a few examples."""
    groups: dict[str, dict[str, Any]] = {}
    for keys in parts:
        for _, letter in read_letters_tail(client, keys):
            reason = str(letter.get("reason", ""))
            group = groups.setdefault(reason, {"reason": reason, "count": 0, "examples": []})
            group["count"] += 1
            if len(group["examples"]) < EXAMPLES:
                group["examples"].append(
                    {
                        "url": letter_url(letter),
                        "node": letter.get("node"),
                        "time": letter.get("time"),
                    }
                )
    return sorted(groups.values(), key=lambda g: (-g["count"], g["reason"]))


def read_letters_tail(client: Any, keys: Keys) -> list[tuple[bytes, dict[str, Any]]]:
    """The newest LETTERS_READ dead letters of the partition of *keys*."""
    return read_letters(client, keys, -LETTERS_READ)
