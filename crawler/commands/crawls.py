"""``scrapy crawls [--json]``: every crawl in this Redis with its state."""

from __future__ import annotations

import argparse
import json
from typing import Any

import redis

from crawler.commandbase import CrawlCommand
from crawler.commands._common import open_redis, run_guarded
from crawler.commands.status import all_crawls
from crawler.connection import redact, sync_client
from crawler.jobs import crawl_state
from crawler.keys import CRAWLS_KEY, Keys
from crawler.status import snapshot

_HEADER = ("crawl", "state", "nodes", "queued", "in flight", "done", "items", "dead", "expires")


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "[--json]"

    def short_desc(self) -> str:
        return "List the crawls in this Redis with their state (running, finished, ...)"

    def long_desc(self) -> str:
        return (
            "List every crawl in this Redis (named by CRAWLER_CRAWL_NAME, by default the "
            "spider's name): new (seeded, no node yet), running, paused, stopped (no node, "
            "work left), finished or empty; its live nodes, counts, and when a finished "
            "crawl's keys expire (CRAWLER_CRAWL_TTL). Crawls that expired are dropped "
            "from the list."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(opts.json))

    def _run(self, as_json: bool) -> None:
        assert self.settings is not None
        url = open_redis(self.settings)
        client: Any = sync_client(url)
        try:
            found = [_row(client, keys) for keys in all_crawls(client, self.settings)]
        finally:
            client.close()
        rows = [row for row in found if row is not None]
        if as_json:
            print(json.dumps(rows))
        elif not rows:
            print(f"no crawls in {redact(url)}")
        else:
            print(_table(rows))


def _row(client: Any, keys: Keys) -> dict[str, Any] | None:
    """One crawl's line; None (and off the list) once its keys expired."""
    if not client.exists(keys.stats, keys.config, keys.nodeinfo, keys.start_urls):
        try:
            client.srem(CRAWLS_KEY, keys.name)
        except redis.exceptions.NoPermissionError:
            pass  # a read-only user: listed as gone all the same
        return None
    snap = snapshot(client, keys)
    ttl = int(client.pttl(keys.stats))
    return {
        "crawl": keys.name,
        "state": crawl_state(snap),
        "nodes": snap["live_nodes"],
        "queued": snap["queued"],
        "in_flight": snap["in_flight"],
        "done": snap["done"],
        "items": snap["items"],
        "dead": snap["dead"],
        "expires_in": round(ttl / 1000, 1) if ttl > 0 else None,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [_HEADER] + [
        tuple(
            f"{v:,}" if isinstance(v, int) else str(v)
            for v in (*list(row.values())[:8], _expires(row["expires_in"]))
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADER))]
    return "\n".join(
        "  ".join(_cell(line, widths, i) for i in range(len(widths))) for line in cells
    )


def _cell(line: tuple[str, ...], widths: list[int], i: int) -> str:
    return line[i].ljust(widths[i]) if i < 2 else line[i].rjust(widths[i])


def _expires(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"in {seconds / size:.0f}{unit}"
    return f"in {seconds:.0f}s"
