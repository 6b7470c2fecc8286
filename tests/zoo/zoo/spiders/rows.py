"""One item object, filled and yielded again for each row of a page (a
common shape, though Scrapy's docs make a new item per row): plain Scrapy
exports one item per yield. Each yield has an id of its own here too,
stable when the page is processed again."""

import scrapy

from zoo import SITE


class Row(scrapy.Item):
    page = scrapy.Field()
    link = scrapy.Field()


class RowsSpider(scrapy.Spider):
    name = "rows"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/tree/0.html"]

    def parse(self, response):
        row = Row()
        for href in response.css("a::attr(href)").getall():
            row["page"] = response.url
            row["link"] = response.urljoin(href)
            yield row
            yield response.follow(href, callback=self.parse)
