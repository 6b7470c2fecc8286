"""Scrapy's spider example with an asynchronous ``start()`` and Items;
``start()`` also yields items itself (as Scrapy's docs allow), the same one
twice: plain Scrapy exports both, once each, whatever the node count."""

import scrapy

from zoo import SITE
from zoo.items import MyItem


class MySpider(scrapy.Spider):
    name = "async_start"
    allowed_domains = ["127.0.0.1"]

    async def start(self):
        yield MyItem(title="from start()")
        yield MyItem(title="from start()")
        yield scrapy.Request(f"{SITE}/h3/1.html", self.parse)
        yield scrapy.Request(f"{SITE}/h3/2.html", self.parse)
        yield scrapy.Request(f"{SITE}/h3/3.html", self.parse)

    def parse(self, response):
        for h3 in response.xpath("//h3").getall():
            yield MyItem(title=h3)

        for href in response.xpath("//a/@href").getall():
            yield scrapy.Request(response.urljoin(href), self.parse)
