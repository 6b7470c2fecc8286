"""A CrawlSpider as Scrapy's docs write one, for a real site: Debian's
Python documentation (tests/test_realsite.py serves it on loopback)."""

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

from zoo import SITE


class PyDocsSpider(CrawlSpider):
    name = "pydocs"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/index.html"]

    rules = (Rule(LinkExtractor(allow=r"\.html$"), callback="parse_page", follow=True),)

    def parse_page(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
