"""Item pipeline that stores every item in the crawl's shared item store."""

from __future__ import annotations

from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawler.scheduler import RedisScheduler, redis_scheduler


class RedisItemPipeline:
    """Stores items in Redis with the commit that acknowledges their request.

    Runs last (order 999, or after the project's last pipeline), so it
    stores what the other pipelines let through, as they left it. An item
    with the same identity is stored once (see ``CRAWLER_ITEM_KEY``), which
    keeps re-processing after a crash from duplicating it in ``scrapy export``.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisItemPipeline:
        return cls(crawler)

    def _scheduler(self) -> RedisScheduler:
        scheduler = redis_scheduler(self.crawler)
        if scheduler is None:
            raise NotConfigured(
                "RedisItemPipeline needs SCHEDULER = 'crawler.scheduler.RedisScheduler' "
                "(the crawler.addon.DistributedCrawl add-on sets it)."
            )
        return scheduler

    def process_item(self, item: Any) -> Any:
        self._scheduler().store_item(item)
        return item
