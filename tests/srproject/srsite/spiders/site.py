"""The same crawl as the framework's example ``site`` spider (same name,
same callback), written for scrapy-redis: a plain ``scrapy.Spider``."""

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response


class SiteSpider(scrapy.Spider):
    name = "site"

    def __init__(self, start_url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start_url

    async def start(self) -> AsyncIterator[Any]:
        # Filtered like any other request (start_urls ones are dont_filter),
        # so the start page is fetched once even though pages link to it.
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url}
        host = urlsplit(response.url).netloc
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            if urlsplit(url).netloc == host:
                # A few priorities, which the import must keep.
                yield scrapy.Request(url, callback=self.parse, priority=len(url) % 3)
