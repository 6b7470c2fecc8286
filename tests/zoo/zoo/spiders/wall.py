"""Scrapy's tutorial shape whose start URL first redirects to itself (a
cookie wall). Plain Scrapy follows it (its start request and the redirect
are ``dont_filter``); the redirect back into its own chain is keyed as a
link, so the crawl goes on from it (the start key is seen already)."""

import scrapy

from zoo import SITE


class WallSpider(scrapy.Spider):
    name = "wall"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/wall/0.html"]

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all(css="a", callback=self.parse)
