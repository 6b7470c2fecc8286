"""Scrapy's tutorial shape (``start_urls``, an item per page, links
followed) with a page fetched again on purpose for another callback
(``dont_filter=True``, as Scrapy's ``Request`` docs describe it). Pages link
back to the start URL, which plain Scrapy fetches again (its start requests
are ``dont_filter``, and so is a redirect of one: the start URL redirects
to the root): every fetch's items are kept."""

import scrapy

from zoo import SITE


class AgainSpider(scrapy.Spider):
    name = "again"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/again/start"]  # redirects to /again/0.html

    def parse(self, response):
        yield {"url": response.url, "kind": "page"}
        if response.url.endswith("/again/1.html"):
            yield scrapy.Request(response.url, callback=self.parse_again, dont_filter=True)
        yield from response.follow_all(css="a", callback=self.parse)

    def parse_again(self, response):
        yield {"url": response.url, "kind": "again"}
