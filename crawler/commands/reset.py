"""``scrapy reset SPIDER [--yes]``: delete a crawl's state to start it afresh."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import CommandFailed, open_crawl, run_guarded
from crawler.connection import sync_client
from crawler.keys import CRAWLS_KEY, Keys
from crawler.status import snapshot

_CHUNK = 1000


def crawl_keys(client: Any, keys: Keys) -> list[str]:
    """Every key of the crawl, found from the crawl's own indexes; only the
    shared robots.txt copies (which expire anyway) are found by SCAN."""
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
        keys.stats,
        keys.dead,
        keys.commit_seqs,
        keys.config,
        keys.start_urls,
    ]
    names += [keys.queue(p.decode()) for p in client.zrange(keys.prios, 0, -1)]
    nodes = {n.decode() for n in client.zrange(keys.nodes, 0, -1)}
    nodes |= {n.decode() for n in client.hkeys(keys.nodeinfo)}
    names += [keys.held(n) for n in sorted(nodes)]
    names += [keys.parkin(n) for n in sorted(nodes)]
    names += [keys.seen(shard) for shard in range(keys.seen_shards)]
    layers = int(client.hget(keys.bloom, "layers") or 0)
    names += [keys.bloom, *(keys.bloom_layer(n) for n in range(1, layers + 1))]
    names += [
        keys.parked,
        keys.domain_next,
        keys.domain_busy,
        keys.backoffs,
        keys.crawl_delays,
        keys.auto_delays,
        keys.domain_pages,
    ]
    names += [keys.park(d.decode()) for d in client.zrange(keys.parked, 0, -1)]
    # robots.txt copies and the dashboard's time series (crawler.timeseries)
    # expire on their own; the crawl's are found by name.
    for pattern in (keys.robots("*"), f"{keys.tag}:ts:*"):
        names += [k.decode() for k in client.scan_iter(match=pattern, count=1000)]
    return names


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> [--yes]"

    def short_desc(self) -> str:
        return "Delete a crawl's frontier, seen-set, items and stats, to crawl it afresh"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts.yes))

    def _run(self, name: str, yes: bool) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, name)
        keys = crawl.config.keys
        client: Any = sync_client(crawl.url)
        snap = snapshot(client, keys)
        if not yes:
            running = snap["live_nodes"]
            print(
                f"This deletes crawl {keys.name!r}: {snap['queued']:,} queued, {snap['seen']:,} "
                f"seen, {snap['items']:,} items, {snap['dead']:,} dead letters"
                + (f", and {running} nodes are running on it." if running else "."),
                file=sys.stderr,
            )
            if not sys.stdin.isatty() or input("Type the crawl name to confirm: ") != keys.name:
                raise CommandFailed("not confirmed; nothing deleted (use --yes to skip asking)")
        names = [name for part in crawl.config.partitions() for name in crawl_keys(client, part)]
        deleted = 0
        for start in range(0, len(names), _CHUNK):
            deleted += client.unlink(*names[start : start + _CHUNK])
        client.srem(CRAWLS_KEY, keys.name)
        client.close()
        print(f"reset crawl {keys.name!r}: deleted {deleted} keys")
