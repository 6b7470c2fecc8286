"""Scrapy's "CSVFeedSpider example"."""

from scrapy.spiders import CSVFeedSpider

from zoo import SITE
from zoo.items import TestItem


class MySpider(CSVFeedSpider):
    name = "csvfeed"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/feed.csv"]
    delimiter = ";"
    quotechar = "'"
    headers = ["id", "name", "description"]

    def parse_row(self, response, row):
        self.logger.info("Hi, this is a row!: %r", row)

        item = TestItem()
        item.id = row["id"]
        item.name = row["name"]
        item.description = row["description"]
        return item
