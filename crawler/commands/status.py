"""``scrapy status [SPIDER] [--json] [--watch] [--stats]``: how the crawl stands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from crawler.commandbase import CrawlCommand
from crawler.commands._common import crawl_known, open_crawl, open_redis, run_guarded
from crawler.config import crawl_keys
from crawler.connection import redact, sync_client
from crawler.keys import CRAWLS_KEY, Keys
from crawler.status import render, snapshot


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "[spider] [--json] [--watch] [--stats]"

    def short_desc(self) -> str:
        return "Show a distributed crawl's counts, rate and nodes (all crawls without a spider)"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
        parser.add_argument("--interval", type=float, default=2.0, help="--watch period (s)")
        parser.add_argument("--stats", action="store_true", help="the cluster's summed stats")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if args:
            crawl = open_crawl(self.settings, spider_args=self.spider_args, name=args[0])
            url, targets = crawl.url, [crawl.config.keys]
            if not crawl_known(crawl):
                print(
                    f"note: this Redis holds nothing of crawl {crawl.config.name!r} yet (zeros "
                    "below): check REDIS_URL, its db number, and CRAWLER_CRAWL_NAME "
                    "(`scrapy crawls` lists the crawls there)",
                    file=sys.stderr,
                )
        else:
            url = open_redis(self.settings)
            targets = []
        client: Any = sync_client(url)
        try:
            while True:
                keys = targets or all_crawls(client, self.settings)
                text = _report(client, keys, url, opts, single=bool(args))
                if opts.watch and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(text, flush=True)
                if not opts.watch:
                    return
                time.sleep(opts.interval)
        except KeyboardInterrupt:
            pass
        finally:
            client.close()


def _report(client: Any, keys: list[Keys], url: str, opts: argparse.Namespace, single: bool) -> str:
    """The report on *keys*; a JSON object for one named crawl, else a list."""
    if opts.stats:
        stats = {k.name: _cluster_stats(client, k) for k in keys}
        if opts.json:
            return json.dumps(stats[keys[0].name] if single else stats)
        return "\n".join(
            f"cluster stats of crawl {name!r}:\n"
            + "\n".join(f"  {field}: {value}" for field, value in values.items())
            for name, values in stats.items()
        )
    snaps = [snapshot(client, k) for k in keys]
    if opts.json:
        return json.dumps(snaps[0] if single else snaps)
    if not snaps:
        return f"no crawls in {redact(url)}"
    return "\n\n".join(render(s, redact(url)) for s in snaps)


def _cluster_stats(client: Any, keys: Keys) -> dict[str, int | float | str]:
    raw = client.hgetall(keys.clusterstats)
    return {field.decode(): _number(value) for field, value in sorted(raw.items())}


def _number(value: bytes) -> int | float | str:
    text = value.decode()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def all_crawls(client: Any, settings: Any) -> list[Keys]:
    """The key names of every crawl registered in this Redis."""
    names = sorted(n.decode() for n in client.smembers(CRAWLS_KEY))
    return [crawl_keys(settings, name) for name in names]
