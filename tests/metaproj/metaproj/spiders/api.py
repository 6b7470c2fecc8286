"""Yields what a JSON API answers, as it is (``response.json()``)."""

import scrapy


class ApiSpider(scrapy.Spider):
    name = "api"

    def parse(self, response):
        yield {"url": response.url, **response.json()}
