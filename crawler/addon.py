"""The Scrapy add-on that turns a project into a distributed crawl."""

from __future__ import annotations

from scrapy.crawler import Crawler
from scrapy.settings import BaseSettings

from crawler import default_settings, redact, scrapy_redis_compat

_SCRAPY_ROBOTS = "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"


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
        settings.set("SCHEDULER", "crawler.scheduler.RedisScheduler", "addon")
        settings["SPIDER_MIDDLEWARES"]["crawler.middleware.DistributedSpiderMiddleware"] = 10
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.deadletters.DeadLetterMiddleware"] = 540
        # Politeness for the whole cluster (crawler/politeness.py): 429/503
        # pause a domain everywhere, robots.txt is fetched once per cluster,
        # and AutoThrottle runs on latencies shared through Redis.
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.backoff.BackoffMiddleware"] = 555
        # Sees the final response (after redirects, retries, decompression).
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.recrawl.RecrawlMiddleware"] = 530
        settings["DOWNLOADER_MIDDLEWARES"][_SCRAPY_ROBOTS] = None
        settings["DOWNLOADER_MIDDLEWARES"]["crawler.robots.SharedRobotsTxtMiddleware"] = 100
        settings["EXTENSIONS"]["scrapy.extensions.throttle.AutoThrottle"] = None
        settings["ITEM_PIPELINES"]["crawler.pipelines.RedisItemPipeline"] = 999
        settings["EXTENSIONS"]["crawler.extension.ClusterFinish"] = 0
        settings["EXTENSIONS"]["crawler.metrics.Metrics"] = 0
        settings["EXTENSIONS"]["crawler.timeseries.TimeSeries"] = 0
        for name in dir(default_settings):
            if name.startswith("CRAWLER_"):
                settings.set(name, getattr(default_settings, name), "addon")
        scrapy_redis_compat.adopt(settings, self.crawler)
