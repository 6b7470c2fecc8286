"""Scrapy's ``CloseSpider`` example (the docs' "Built-in Exceptions"): a
callback closes the spider when a page says so."""

import scrapy
from scrapy.exceptions import CloseSpider

from zoo import SITE


class BandwidthSpider(scrapy.Spider):
    name = "bandwidth"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/bandwidth/0.html"]

    def parse(self, response):
        if "Bandwidth exceeded" in response.text:
            raise CloseSpider("bandwidth_exceeded")
        yield {"url": response.url}
        yield from response.follow_all(css="a", callback=self.parse)
