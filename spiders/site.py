"""A site crawler: follows same-site links, one item per page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response


class SiteSpider(scrapy.Spider):
    """Crawl one site from its seeds; yield url, title and status per page.

    Seed it with ``scrapy seed site URL``; every host that is seeded counts
    as "the site". ``-a start_url=URL`` also sets a start URL (several,
    separated by spaces: a URL has none).
    """

    name = "site"
    handle_httpstatus_list = [404, 500]

    def __init__(self, start_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if start_url:
            self.start_urls = start_url.split()

    def parse(self, response: Response) -> Iterator[Any]:
        title = response.css("title::text").get() if hasattr(response, "css") else None
        yield {"url": response.url, "title": (title or "").strip(), "status": response.status}
        if not hasattr(response, "css"):
            return
        host = urlsplit(response.url).netloc
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            if urlsplit(url).netloc == host:
                yield scrapy.Request(url, callback=self.parse)
