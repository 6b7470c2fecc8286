"""Spider middleware: cluster-wide dedupe of start requests, item identity."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawler.scheduler import RedisScheduler, redis_scheduler

#: Set this meta key on a start request to fetch it on every node and crawl.
DONT_DEDUPE_START = "crawler_dont_dedupe_start"


class DistributedSpiderMiddleware:
    """Runs nearest the engine, so it sees exactly what the spider produced.

    * Start requests (``start_urls``, ``start()``) go through the shared
      seen-set, so N nodes starting the same spider fetch them once. Scrapy
      marks them ``dont_filter``; this middleware clears that.
    * Each item is tagged with a stable identity: the fingerprint of the
      request whose response produced it and its position in the output, so
      re-processing after a crash stores it once.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        crawler.signals.connect(self._forget, signal=signals.item_dropped)
        crawler.signals.connect(self._forget, signal=signals.item_error)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DistributedSpiderMiddleware:
        return cls(crawler)

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for output in start:
            if (
                isinstance(output, Request)
                and output.dont_filter
                and not output.meta.get(DONT_DEDUPE_START)
            ):
                output = output.replace(dont_filter=False)
            yield output

    async def process_spider_output(
        self, response: Response, result: AsyncIterator[Any], spider: Spider | None = None
    ) -> AsyncIterator[Any]:
        scheduler = self._scheduler()
        request = response.request
        prefix: bytes | None = None
        index = 0
        async for output in result:
            if (
                scheduler is not None
                and request is not None
                and output is not None
                and not isinstance(output, Request)
            ):
                if prefix is None:
                    prefix = self.crawler.request_fingerprinter.fingerprint(request)
                item_id = hashlib.sha1(prefix + index.to_bytes(4, "big")).digest()[:12]
                scheduler.note_origin(output, item_id, request)
                index += 1
            yield output

    def _forget(self, item: Any, **kwargs: Any) -> None:
        scheduler = self._scheduler()
        if scheduler is not None:
            scheduler.forget_origin(item)
