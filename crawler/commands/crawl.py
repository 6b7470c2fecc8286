"""``scrapy crawl``, with clear errors before anything starts and an exit
status that tells a crawl which finished with dead letters from a clean one."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawl

from crawler.addon import take_scheduler
from crawler.commands._common import CommandFailed, run_guarded, spider_class
from crawler.commands._plain import ADDON, addon_path
from crawler.config import CrawlConfig
from crawler.connection import check_reachable, resolve_url, sync_client
from crawler.exceptions import CrawlerError
from crawler.metrics import check_metrics_port
from crawler.scheduler import PERMISSION_DENIED
from crawler.seenrecord import check_seen_config


class Command(ScrapyCrawl):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if len(args) != 1:
            super().run(args, opts)  # Scrapy's usage errors
            return
        spidercls = spider_class(self.settings, args[0])
        settings = self.settings.copy()
        spidercls.update_settings(settings)  # its custom_settings
        if not _distributed(settings):
            # The add-on is off (e.g. `-s ADDONS={}`): plain Scrapy, no Redis.
            super().run(args, opts)
            return
        try:
            url = resolve_url(self.settings)
            check_reachable(url)
            config = CrawlConfig.from_settings(settings, spidercls.name)
            take_scheduler(settings.copy())
            check_metrics_port(settings)
            with sync_client(url) as client:
                check_seen_config(client, config.keys, config.seen)
        except CrawlerError as exc:
            raise CommandFailed(str(exc)) from None
        # The node uses the server checked here (and the local one it may
        # have started) rather than resolving it again. Not a setting:
        # Scrapy logs overridden settings.
        os.environ["REDIS_URL"] = url
        self._crawl(args[0], opts)

    def _crawl(self, name: str, opts: argparse.Namespace) -> None:
        """Scrapy's crawl, keeping the crawler to read how it ended."""
        assert self.crawler_process is not None
        crawler = self._create_crawler(name)
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            where = crawler.settings.get("LOG_FILE") or "the log above"
            print(
                f"error: the node failed to start; its error is in {where}.",
                file=sys.stderr,
            )
            return
        stats = crawler.stats
        assert stats is not None
        if stats.get_value("finish_reason") == PERMISSION_DENIED:
            self.exitcode = 1
            return
        code = crawler.settings.getint("CRAWLER_DEAD_LETTER_EXIT_CODE")
        if stats.get_value("finish_reason") == "finished" and stats.get_value(
            "crawler/dead_letters"
        ):
            self.exitcode = code


def _distributed(settings: Any) -> bool:
    """True if the crawl runs with the framework's add-on (not turned off
    with ``None``, as Scrapy's components are)."""
    return any(
        addon_path(addon) == ADDON and order is not None
        for addon, order in settings.getdict("ADDONS").items()
    )
