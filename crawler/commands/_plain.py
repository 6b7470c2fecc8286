"""Scrapy's commands for looking at a page or a spider on this machine
(``shell``, ``fetch``, ``view``, ``parse``, ``check``, ``bench``), run as
plain Scrapy: without the add-on.

With it, each of them joined the crawl of its spider as a node: the
request it makes cannot be stored in Redis (a callback of the command's
own, a ``SequenceExclude`` in ``meta``), so it was dead-lettered and the
command hung (``shell``), printed nothing and exited 0 (``fetch``), or
crawled the whole frontier before reporting nothing (``parse``, and
``check``'s "0 contracts, OK"), leaving a dead letter that made the real
crawl exit 3.

In the add-on's place they get :class:`LookOnly`, which switches off a
scrapy-redis spider's own Redis loop as the add-on does on a crawl: left
on, ``scrapy parse``/``fetch``/``check`` of a ``RedisSpider`` popped the
crawl's seeds from its ``redis_key`` once their page was done (fetching
them here, their items thrown away: lost to the crawl) and then waited for
more for ever.
"""

from __future__ import annotations

from typing import Any

from scrapy import signals
from scrapy.settings import BaseSettings

from crawler.scrapy_redis_compat import quiet_redis_spider
from crawler.scrapy_redis_settings import component_path

ADDON = "crawler.addon.DistributedCrawl"
LOOK_ONLY = "crawler.commands._plain.LookOnly"


def without_addon(settings: BaseSettings) -> None:
    """Turn the framework's add-on off in *settings*, as ``None`` does."""
    addons = settings["ADDONS"]
    named = [addon for addon in addons if component_path(addon) == ADDON]
    for addon in named or [ADDON]:
        addons.set(addon, None, "cmdline")
    addons.set(LOOK_ONLY, 0, "cmdline")


class LookOnly:
    """The add-on of the commands that run without the framework's: a
    scrapy-redis spider's own loop (``spider_idle`` popping its
    ``redis_key``, and raising ``DontCloseSpider`` for ever) stays off, so
    the command takes no seed from the crawl and ends with its page."""

    def __init__(self, crawler: Any = None) -> None:
        if crawler is not None:
            crawler.signals.connect(self._opened, signal=signals.spider_opened)
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> LookOnly:
        return cls(crawler)

    def _opened(self, spider: Any) -> None:
        quiet_redis_spider(spider, self.crawler)


class OnThisMachine:
    """A Scrapy command, run without the add-on."""

    settings: Any

    crawler_process: Any

    def process_options(self, args: list[str], opts: Any) -> None:
        super().process_options(args, opts)  # type: ignore[misc]
        without_addon(self.settings)

    def run(self, args: list[str], opts: Any) -> None:
        # Again in each crawler's settings, once the spider's custom_settings
        # are in: an ADDONS there (spider priority) replaces the project's
        # whole dict, the add-on turned off above included.
        process = self.crawler_process
        if process is not None:
            create = process._create_crawler

            def create_without_addon(spidercls: Any) -> Any:
                crawler = create(spidercls)
                without_addon(crawler.settings)
                return crawler

            process._create_crawler = create_without_addon
        super().run(args, opts)  # type: ignore[misc]
