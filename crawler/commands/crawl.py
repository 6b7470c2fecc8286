"""``scrapy crawl``, with clear errors before anything starts and an exit
status that tells a crawl which finished with dead letters from a clean one."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from scrapy import signals
from scrapy.commands.crawl import Command as ScrapyCrawl

from crawler.addon import take_scheduler
from crawler.commands._common import CommandFailed, run_guarded, spider_class
from crawler.commands._plain import ADDON
from crawler.config import CrawlConfig
from crawler.connection import check_reachable, resolve_url, sync_client
from crawler.exceptions import ConfigError, CrawlerError
from crawler.metrics import check_metrics_port
from crawler.scheduler import PERMISSION_DENIED
from crawler.scrapy_redis_settings import component_path
from crawler.scripts import check_scripting
from crawler.seenrecord import check_seen_config

logger = logging.getLogger(__name__)

ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"


class Command(ScrapyCrawl):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(args, opts))

    def _run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if len(args) != 1:
            super().run(args, opts)  # Scrapy's usage errors
            return
        spidercls = spider_class(self.settings, args[0])
        if not prepare_node(self.settings, spidercls):
            # The add-on is off (e.g. `-s ADDONS={}`): plain Scrapy, no Redis.
            super().run(args, opts)
            return
        self._crawl(args[0], opts)

    def _crawl(self, name: str, opts: argparse.Namespace) -> None:
        """Scrapy's crawl, keeping the crawler to read how it ended."""
        assert self.crawler_process is not None
        crawler = self._create_crawler(name)
        outcome = NodeOutcome(crawler)
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        self.exitcode = outcome.exit_code(self.crawler_process.bootstrap_failed, name)


def prepare_node(project: Any, spidercls: Any) -> bool:
    """The checks ``scrapy crawl`` and ``scrapy runspider`` make before a
    node starts, so that a bad setup is one ``error:`` line (CommandFailed)
    rather than tracebacks from a started node: whether the spider runs
    with the add-on (False: plain Scrapy, unless its ADDONS dropped the
    project's add-on), the reactor, Redis reachable and running scripts,
    the scheduler, the metrics port, the crawl's seen-set settings.
    *project*: the command's settings, without the spider's
    ``custom_settings``."""
    settings = project.copy()
    spidercls.update_settings(settings)  # its custom_settings
    if not distributed(settings):
        dropped_by_spider(project, spidercls)
        return False
    try:
        check_reactor(settings)
        url = resolve_url(project)
        check_reachable(url)
        config = CrawlConfig.from_settings(settings, spidercls.name)
        take_scheduler(settings.copy())
        check_metrics_port(settings)
        with sync_client(url) as client:
            # Refused, Redis's answer becomes run_guarded's `error:` line.
            check_scripting(client)
            check_seen_config(client, config.keys, config.seen)
    except CrawlerError as exc:
        raise CommandFailed(str(exc)) from None
    # The node uses the server checked here (and the local one it may
    # have started) rather than resolving it again. Not a setting:
    # Scrapy logs overridden settings.
    os.environ["REDIS_URL"] = url
    return True


class NodeOutcome:
    """How a node's crawl ended, read as its spider closes, not from the
    stats afterwards: a project's STATS_CLASS may be scrapy-redis's
    RedisStatsCollector, which deletes its values when the spider closes
    (the exit status said 0 over dead letters) and int()s every value it
    reads (a traceback on "finished")."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.ended: dict[str, Any] = {}
        crawler.signals.connect(self._closed, signals.spider_closed)

    def _closed(self, spider: Any, reason: str) -> None:
        stats, ended = self.crawler.stats, self.ended
        ended["reason"] = reason
        for stat in ("crawler/dead_letters", "downloader/response_count"):
            ended[stat] = _stat(stats, stat)
        ended["duplicates"] = _stat(stats, "crawler/duplicates") + _stat(
            stats, "crawler/duplicates_local"
        )

    def exit_code(self, bootstrap_failed: bool, name: str) -> int:
        """The node's exit status (saying why, where it is not 0)."""
        crawler, ended = self.crawler, self.ended
        if bootstrap_failed:
            where = crawler.settings.get("LOG_FILE") or "the log above"
            print(f"error: the node failed to start; its error is in {where}.", file=sys.stderr)
            return 1
        reason = ended.get("reason")
        if reason == PERMISSION_DENIED:
            return 1
        if reason == "finished" and not ended["downloader/response_count"] and ended["duplicates"]:
            # A crawl run again as plain Scrapy runs it: its start URLs are
            # in the crawl's seen-set, so nothing is fetched (a -O feed is
            # written empty). Said, with the way to start afresh.
            logger.warning(
                "This node fetched nothing: its start requests were in crawl %r's seen-set "
                "already (fetched before, or by another node; `scrapy status %s`). If the "
                "crawl had finished before, `scrapy reset %s` crawls it again from scratch.",
                crawler.settings.get("CRAWLER_CRAWL_NAME") or name,
                name,
                name,
            )
        if reason == "finished" and ended["crawler/dead_letters"]:
            return int(crawler.settings.getint("CRAWLER_DEAD_LETTER_EXIT_CODE"))
        return 0


def _stat(stats: Any, name: str) -> int:
    """A numeric stat, 0 if missing or unreadable."""
    try:
        return int(stats.get_value(name) or 0)
    except (TypeError, ValueError):
        return 0


def dropped_by_spider(project: Any, spidercls: Any) -> None:
    """Refuse a spider whose ``custom_settings`` ADDONS leaves out the add-on
    the project enables: Scrapy replaces a dict setting as a whole, so a
    spider enabling another add-on there ran as plain Scrapy, on each node
    the whole crawl, in silence (helper 49). Naming the add-on there (``None``
    to run plain on purpose) is the way out."""
    own = (getattr(spidercls, "custom_settings", None) or {}).get("ADDONS")
    if own is None or not distributed(project):
        return
    if any(component_path(addon) == ADDON for addon in dict(own)):
        return  # named by the spider: on, or None on purpose
    raise CommandFailed(
        f"spider {spidercls.name!r} sets ADDONS in its custom_settings without "
        f"{ADDON}, and Scrapy replaces the project's ADDONS with it: the spider would "
        f'run as plain Scrapy, each node crawling everything. Add "{ADDON}": 0 to its '
        "ADDONS (or None there, to run it plain on purpose)."
    )


def check_reactor(settings: Any) -> None:
    """The node runs on the asyncio reactor (Scrapy's default): with another
    TWISTED_REACTOR it said so from the scheduler with two tracebacks, one
    of them Scrapy's "Engine slot not assigned" (helper 49)."""
    reactor = settings.get("TWISTED_REACTOR")
    if settings.getbool("TWISTED_REACTOR_ENABLED", True) and reactor != ASYNCIO_REACTOR:
        raise ConfigError(
            f"the Redis scheduler needs the asyncio reactor (TWISTED_REACTOR is {reactor!r}): "
            f"set TWISTED_REACTOR = {ASYNCIO_REACTOR!r}, Scrapy's default."
        )


def distributed(settings: Any) -> bool:
    """True if the crawl runs with the framework's add-on (not turned off
    with ``None``, as Scrapy's components are)."""
    return any(
        component_path(addon) == ADDON and order is not None
        for addon, order in settings.getdict("ADDONS").items()
    )
