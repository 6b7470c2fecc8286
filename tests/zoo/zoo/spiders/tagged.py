"""Scrapy's tutorial shape, each link followed with the project's own
Request subclass (zoo/tagged.py), whose ``tag`` the callback reads back."""

import scrapy

from zoo import SITE
from zoo.tagged import TaggedRequest


class TaggedSpider(scrapy.Spider):
    name = "tagged"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/tree/0.html"]

    def parse(self, response):
        for href in response.css("a::attr(href)").getall():
            yield TaggedRequest(response.urljoin(href), callback=self.parse, tag=response.url)
        request = response.request
        if isinstance(request, TaggedRequest):
            yield {"url": response.url, "tag": request.tag, "class": type(request).__name__}
