"""Scrapy's idiom for a second phase: gather pages while crawling, then, in
a ``spider_idle`` handler, schedule a request per page found and raise
``DontCloseSpider``. One Scrapy process runs phase 2 once the whole crawl
is done; so must a cluster (each node schedules what it found)."""

import scrapy
from scrapy import signals
from scrapy.exceptions import DontCloseSpider


class PhasesSpider(scrapy.Spider):
    name = "phases"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
        spider.found = []
        spider.phase2 = False
        return spider

    def parse(self, response):
        self.found.append(response.url)
        yield {"url": response.url, "phase": 1}
        yield from response.follow_all(css="a")

    def on_idle(self, spider):
        if self.phase2 or not self.found:
            return
        self.phase2 = True
        self.logger.info("phase 2: %d detail requests", len(self.found))
        for url in self.found:
            detail = scrapy.Request(f"{url}?detail=1", callback=self.detail)
            self.crawler.engine.crawl(detail)
        raise DontCloseSpider

    def detail(self, response):
        yield {"url": response.url, "phase": 2, "phase1_done": True}


class IdleAgainSpider(scrapy.Spider):
    """A spider_idle handler that schedules a page crawled already, at every
    idle, relying on the duplicate filter to let the crawl end (as it does
    in one Scrapy process)."""

    name = "idleagain"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
        spider.first = None
        return spider

    def parse(self, response):
        self.first = self.first or response.url
        yield {"url": response.url}
        yield from response.follow_all(css="a")

    def on_idle(self, spider):
        if self.first:
            self.crawler.engine.crawl(scrapy.Request(self.first))
