"""``scrapy crawl``, with clear errors before anything starts."""

from __future__ import annotations

import argparse
import os

from scrapy.commands.crawl import Command as ScrapyCrawl

from crawler.commands._common import CommandFailed, run_guarded, spider_class
from crawler.connection import check_reachable, resolve_url
from crawler.exceptions import CrawlerError


class Command(ScrapyCrawl):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if len(args) == 1:
            spider_class(self.settings, args[0])
            try:
                url = resolve_url(self.settings)
                check_reachable(url)
            except CrawlerError as exc:
                raise CommandFailed(str(exc)) from None
            # The node uses the server checked here (and the local one it may
            # have started) rather than resolving it again. Not a setting:
            # Scrapy logs overridden settings.
            os.environ["REDIS_URL"] = url
        super().run(args, opts)
