"""A downloader middleware standing in for scrapy-playwright's download
handler with ``playwright_include_page``: it puts an open "tab" into
``meta['playwright_page']`` of each request that asks for one, reusing the
one a request carries (a retried copy, in plain Scrapy) unless closed, and
says at the close how many it opened and how many were never closed."""

from __future__ import annotations

from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler

INCLUDE = "fake_include_page"


class FakeTab:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:  # as Playwright's Page.close
        self.closed = True


class FakeTabs:
    def __init__(self, crawler: Crawler) -> None:
        self.tabs: list[FakeTab] = []
        crawler.signals.connect(self.report, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FakeTabs:
        return cls(crawler)

    def process_request(self, request: Request, spider: Any = None) -> None:
        if request.meta.get(INCLUDE):
            tab = request.meta.get("playwright_page")
            if not isinstance(tab, FakeTab) or tab.closed:
                tab = FakeTab()
                self.tabs.append(tab)
            request.meta["playwright_page"] = tab

    def report(self, spider: Spider) -> None:
        left = sum(not tab.closed for tab in self.tabs)
        spider.logger.warning("fake tabs: %d opened, %d left open", len(self.tabs), left)
