"""Pages read again on purpose (``dont_filter``), their URLs gathered in a
set, whose order differs from one process to the next (each has its own
hash seed). Each page's item keeps its id when the start page is processed
again, by this node or another."""

import scrapy

from zoo import SITE

PAGES = 19


class RecheckSpider(scrapy.Spider):
    name = "recheck"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/tree/0.html"]

    def parse(self, response):
        urls = {f"{SITE}/tree/{i}.html" for i in range(1, PAGES + 1)}
        for url in urls:
            yield scrapy.Request(url, callback=self.parse_page, dont_filter=True)

    def parse_page(self, response):
        yield {"url": response.url}
