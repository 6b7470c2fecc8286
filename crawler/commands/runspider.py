"""Scrapy's ``runspider``, as scrapy-redis's example project runs its
spiders (``scrapy runspider myspider_redis.py``), with what ``scrapy
crawl`` adds when the spider runs with the add-on: the same checks before
the node starts (a non-asyncio reactor, a spider whose ADDONS leave the
add-on out, Redis unreachable: one ``error:`` line, where it was tracebacks
or a plain-Scrapy run of the whole crawl), and its exit status, 3
(CRAWLER_DEAD_LETTER_EXIT_CODE) for a finished crawl holding dead letters
(it exited 0)."""

from __future__ import annotations

import argparse
from typing import Any

from scrapy.commands.runspider import Command as ScrapyRunSpider

from crawler.commands._common import run_guarded
from crawler.commands.crawl import NodeOutcome, prepare_node


class Command(ScrapyRunSpider):
    _outcome: NodeOutcome | None = None

    def _create_crawler(self, spidercls: Any) -> Any:
        assert self.settings is not None
        node = prepare_node(self.settings, spidercls)
        crawler = super()._create_crawler(spidercls)
        if node:
            self._outcome = NodeOutcome(crawler)
        return crawler

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        super().run(args, opts)
        if self._outcome is not None:
            assert self.crawler_process is not None
            name = self._outcome.crawler.spidercls.name
            self.exitcode = self._outcome.exit_code(self.crawler_process.bootstrap_failed, name)
