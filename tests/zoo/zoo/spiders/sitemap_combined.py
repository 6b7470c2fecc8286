"""Scrapy's "Combine SitemapSpider with other sources of urls" example."""

from scrapy import Request
from scrapy.spiders import SitemapSpider

from zoo import SITE


class MySpider(SitemapSpider):
    name = "sitemap_combined"
    sitemap_urls = [f"{SITE}/robots.txt"]
    sitemap_rules = [
        ("/shop/", "parse_shop"),
    ]

    other_urls = [f"{SITE}/about.html"]

    async def start(self):
        async for item_or_request in super().start():
            yield item_or_request
        for url in self.other_urls:
            yield Request(url, self.parse_other)

    def parse_shop(self, response):
        yield {"url": response.url, "kind": "shop"}

    def parse_other(self, response):
        yield {"url": response.url, "kind": "other"}
