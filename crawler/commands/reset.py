"""``scrapy reset SPIDER [--yes]``: delete a crawl's state to start it afresh."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import CommandFailed, open_crawl, run_guarded
from crawler.connection import sync_client
from crawler.jobs import crawl_keys
from crawler.keys import CRAWLS_KEY
from crawler.status import snapshot

_CHUNK = 1000


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> [--yes]"

    def short_desc(self) -> str:
        return "Delete a crawl's frontier, seen-set, items and stats, to crawl it afresh"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument(
            "--start-urls",
            action="store_true",
            help="also delete the start URLs waiting in SPIDER:start_urls (kept by default)",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts.yes, opts.start_urls))

    def _run(self, name: str, yes: bool, start_urls: bool) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        keys = crawl.config.keys
        client: Any = sync_client(crawl.url)
        snap = snapshot(client, keys)
        # Seeds pushed the scrapy-redis way wait there for the nodes to come:
        # kept, as scrapy-redis's SCHEDULER_FLUSH_ON_START keeps them (the
        # README's way to start afresh; deleting them lost the crawl's seeds).
        waiting = snap["start_urls"]
        if waiting:
            fate = "deleted too" if start_urls else "kept (--start-urls deletes them too)"
            print(
                f"{waiting:,} start URLs waiting in {keys.start_urls} are {fate}.",
                file=sys.stderr,
            )
        running = snap["live_nodes"]
        if running:
            # Their next commits would write into the deleted crawl: counters
            # below zero, and a crawl that `export --follow` waits on for good.
            raise CommandFailed(
                f"{running} nodes are running on crawl {keys.name!r}: nothing deleted. Stop "
                "them first (SIGTERM; a node killed -9 counts as running until its lease "
                f"ends, {int(crawl.config.lease_ms / 1000)} s), then reset."
            )
        if not yes:
            print(
                f"This deletes crawl {keys.name!r}: {snap['queued']:,} queued, {snap['seen']:,} "
                f"seen, {snap['items']:,} items, {snap['dead']:,} dead letters.",
                file=sys.stderr,
            )
            if not sys.stdin.isatty() or input("Type the crawl name to confirm: ") != keys.name:
                raise CommandFailed("not confirmed; nothing deleted (use --yes to skip asking)")
        kept = set() if start_urls else {part.start_urls for part in crawl.config.partitions()}
        names = [
            name
            for part in crawl.config.partitions()
            for name in crawl_keys(client, part)
            if name not in kept
        ]
        deleted = 0
        for start in range(0, len(names), _CHUNK):
            deleted += client.unlink(*names[start : start + _CHUNK])
        client.srem(CRAWLS_KEY, keys.name)
        client.close()
        print(f"reset crawl {keys.name!r}: deleted {deleted} keys")
