"""A ``start()`` that raises after yielding a request and an item (an API
for its URLs that fails). Plain Scrapy logs the error, crawls what it
yielded and closes with reason ``start_error``."""

import scrapy

from zoo import SITE


class StartErrorSpider(scrapy.Spider):
    name = "start_error"
    allowed_domains = ["127.0.0.1"]

    async def start(self):
        yield scrapy.Request(f"{SITE}/tree/0.html")
        yield {"from": "start()"}
        raise RuntimeError("the URL source failed")

    def parse(self, response):
        yield {"url": response.url}
