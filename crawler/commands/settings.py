"""Scrapy's ``settings``, with the project's add-ons applied as a crawl
applies them: ``scrapy settings --get SCHEDULER`` printed Scrapy's own
scheduler, and the framework's settings (``CRAWLER_*``, whose defaults the
add-on sets) printed None, though every crawl of the project ran with the
add-on's values."""

from __future__ import annotations

import argparse

from scrapy import Spider
from scrapy.commands.settings import Command as ScrapySettings
from scrapy.crawler import Crawler

from crawler.commands._common import CommandFailed, run_guarded
from crawler.exceptions import CrawlerError


class Command(ScrapySettings):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        # The project's settings, not a spider's: the base Spider has no
        # custom_settings. Add-ons are built from a crawler, as on a crawl.
        crawler = Crawler(Spider, self.settings)
        try:
            crawler.addons.load_settings(crawler.settings)
        except CrawlerError as exc:
            raise CommandFailed(str(exc)) from None
        self.settings = crawler.settings
        super().run(args, opts)
