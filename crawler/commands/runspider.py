"""Scrapy's ``runspider``, with ``scrapy crawl``'s exit status when the
spider runs with the add-on: 3 (CRAWLER_DEAD_LETTER_EXIT_CODE) for a
finished crawl holding dead letters, as scrapy-redis's example project runs
its spiders (``scrapy runspider myspider_redis.py``); it exited 0."""

from __future__ import annotations

import argparse
from typing import Any

from scrapy.commands.runspider import Command as ScrapyRunSpider

from crawler.commands.crawl import NodeOutcome, distributed


class Command(ScrapyRunSpider):
    _outcome: NodeOutcome | None = None

    def _create_crawler(self, spidercls: Any) -> Any:
        crawler = super()._create_crawler(spidercls)
        if distributed(crawler.settings):
            self._outcome = NodeOutcome(crawler)
        return crawler

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        super().run(args, opts)
        if self._outcome is not None:
            assert self.crawler_process is not None
            name = self._outcome.crawler.spidercls.name
            self.exitcode = self._outcome.exit_code(self.crawler_process.bootstrap_failed, name)
