"""``scrapy pause SPIDER``: every node stops taking new requests but stays up."""

from __future__ import annotations

import argparse
from typing import Any

from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import open_crawl, run_guarded
from crawler.connection import sync_client
from crawler.keys import Keys


class Command(CrawlCommand):
    #: The value written to the crawl's control hash.
    paused = True

    def syntax(self) -> str:
        return "<spider>"

    def short_desc(self) -> str:
        return "Pause a distributed crawl: nodes finish what they fetch and take nothing new"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0]))

    def _run(self, name: str) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        client: Any = sync_client(crawl.url)
        set_paused(client, crawl.config.partitions(), self.paused)
        client.close()
        state = "paused: nodes stay up and take no new requests" if self.paused else "resumed"
        print(f"crawl {crawl.config.name!r} {state}")


def set_paused(client: Any, parts: list[Keys], paused: bool) -> None:
    """Pause (or resume) the crawl of these partitions: every node stops
    taking new requests (also used by ``scrapy dashboard``)."""
    for keys in parts:
        if paused:
            client.hset(keys.control, "paused", "1")
        else:
            client.hdel(keys.control, "paused")
