"""The Scrapy add-on that turns a project into a distributed crawl."""

from __future__ import annotations

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object

from crawler import default_settings, redact, scrapy_redis_compat
from crawler.exceptions import ConfigError
from crawler.scrapy_redis_settings import component_path, from_scrapy_redis

_SCRAPY_ROBOTS = "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"
_SCRAPY_SCHEDULER = "scrapy.core.scheduler.Scheduler"
_SCHEDULER = "crawler.scheduler.RedisScheduler"
_STORE = "crawler.pipelines.RedisItemPipeline"


class DistributedCrawl:
    """Enable with ``ADDONS = {"crawler.addon.DistributedCrawl": 0}``.

    Installs the Redis scheduler, the spider middleware, the dead-letter,
    backoff and shared robots.txt downloader middlewares, the item store
    pipeline and the cluster-finish extension, and the framework's default
    settings at add-on priority (so project and command-line values win).
    Scrapy's per-process AutoThrottle is replaced by the cluster's.
    scrapy-redis spiders, components and settings are adopted
    (``crawler.scrapy_redis_compat``).
    """

    def __init__(self, crawler: Crawler | None = None) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DistributedCrawl:
        return cls(crawler)

    def update_settings(self, settings: BaseSettings) -> None:
        redact.install()
        settings.set("SCHEDULER", _SCHEDULER, "addon")
        settings["SPIDER_MIDDLEWARES"]["crawler.middleware.DistributedSpiderMiddleware"] = 10
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.deadletters.DeadLetterMiddleware"] = 540
        # Politeness for the whole cluster (crawler/politeness.py): 429/503
        # pause a domain everywhere, robots.txt is fetched once per cluster,
        # and AutoThrottle runs on latencies shared through Redis.
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.backoff.BackoffMiddleware"] = 555
        # Sees the final response (after redirects, retries, decompression).
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.recrawl.RecrawlMiddleware"] = 530
        # Sees a redirect before RedirectMiddleware (600) follows it.
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.recrawl.RecrawlRedirectMiddleware"] = 610
        settings["DOWNLOADER_MIDDLEWARES"][_SCRAPY_ROBOTS] = None
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.robots.SharedRobotsTxtMiddleware"] = 100
        settings["EXTENSIONS"]["scrapy.extensions.throttle.AutoThrottle"] = None
        settings["ITEM_PIPELINES"][_STORE] = _store_order(settings)
        settings["EXTENSIONS"]["crawler.extension.ClusterFinish"] = 0
        settings["EXTENSIONS"]["crawler.metrics.Metrics"] = 0
        settings["EXTENSIONS"]["crawler.timeseries.TimeSeries"] = 0
        for name in dir(default_settings):
            if name.startswith("CRAWLER_"):
                settings.set(name, getattr(default_settings, name), "addon")
        scrapy_redis_compat.adopt(settings, self.crawler)
        take_scheduler(settings)


def _store_order(settings: BaseSettings) -> int:
    """The item store's order: 999, or after the project's last pipeline
    (one at 1000 ran after the store: items it dropped were stored, and
    what it changed was not)."""
    orders = [
        int(order)
        for path, order in settings.getwithbase("ITEM_PIPELINES").items()
        if order is not None and component_path(path) != _STORE
    ]
    return max([999, *(order + 1 for order in orders)])


def take_scheduler(settings: BaseSettings) -> None:
    """A project's ``SCHEDULER`` outranks the add-on's priority. Scrapy's own
    scheduler named there is replaced as its default is; any other one
    would leave the node without the frontier (it crawled nothing and
    exited 0): refused, naming the way out."""
    path = component_path(settings.get("SCHEDULER"))
    if from_scrapy_redis(path, "scrapy_redis.scheduler.Scheduler"):
        return  # adopted (crawler.scrapy_redis_compat)
    if path == _SCRAPY_SCHEDULER:
        settings.set("SCHEDULER", _SCHEDULER, settings.getpriority("SCHEDULER") or "addon")
        return
    try:
        cls = load_object(settings.get("SCHEDULER"))
    except (ImportError, NameError, ValueError, AttributeError) as exc:
        raise ConfigError(f"SCHEDULER = {path!r} cannot be imported ({exc}).") from None
    # By name: Scrapy's scheduler metaclass makes isinstance() and
    # issubclass() true for any class with a scheduler's methods.
    if not (isinstance(cls, type) and _SCHEDULER in map(component_path, cls.__mro__)):
        raise ConfigError(
            f"SCHEDULER = {path!r} replaces the framework's scheduler "
            f"({_SCHEDULER}), which holds the shared frontier: a node would crawl "
            "nothing. Remove SCHEDULER from the project's settings (or subclass "
            "crawler.scheduler.RedisScheduler)."
        )
