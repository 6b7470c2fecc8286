"""An identical request performed several times on purpose, as Scrapy's
``Request`` docs describe ``dont_filter``: a live score page read three
times from one callback, and once more from the errback of each of three
links, one that answers 404 and two robots.txt disallows (each errback
yields the same request). Plain Scrapy fetches the page six times and keeps
an item of each reading."""

import scrapy

from zoo import SITE

READINGS = 3


class PollSpider(scrapy.Spider):
    name = "poll"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/poll/"]

    def parse(self, response):
        for _ in range(READINGS):
            yield scrapy.Request(
                response.urljoin("live"), callback=self.parse_live, dont_filter=True
            )
        yield from response.follow_all(css="a", callback=self.parse_live, errback=self.gone)

    def parse_live(self, response):
        yield {"url": response.url, "score": response.css(".score::text").get()}

    def gone(self, failure):
        # The page is gone, or not to be crawled: read the live score instead.
        yield scrapy.Request(f"{SITE}/poll/live", callback=self.parse_live, dont_filter=True)
