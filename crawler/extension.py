"""Cluster-wide finish: a node closes only when the whole crawl is done."""

from __future__ import annotations

import logging

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider

from crawler.config import CrawlConfig
from crawler.scheduler import redis_scheduler

logger = logging.getLogger(__name__)


class ClusterFinish:
    """On ``spider_idle``, keeps the node open while any node has work.

    A node is merely idle when its own engine has nothing to do; the crawl is
    finished when the frontier is empty, no node holds a request and nothing
    new was queued for ``CRAWLER_FINISH_GRACE`` seconds. Then every node
    closes with reason ``finished``, unless ``CRAWLER_KEEP_ALIVE`` is on.
    """

    def __init__(self, crawler: Crawler, keep_alive: bool) -> None:
        self.crawler = crawler
        self.keep_alive = keep_alive
        self._logged = False
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ClusterFinish:
        config = CrawlConfig.from_settings(crawler.settings, crawler.spidercls.name)
        return cls(crawler, config.keep_alive)

    def spider_idle(self, spider: Spider) -> None:
        scheduler = redis_scheduler(self.crawler)
        if scheduler is None:
            return
        if not scheduler.cluster_finished:
            raise DontCloseSpider
        if self.keep_alive:
            if not self._logged:
                logger.info("Crawl is finished; CRAWLER_KEEP_ALIVE is on, waiting for new seeds.")
                self._logged = True
            raise DontCloseSpider
        logger.info("The whole cluster's crawl is finished; closing.")
