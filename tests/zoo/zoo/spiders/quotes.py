"""Scrapy's tutorial spider (docs/intro/tutorial.rst), as it is written
there: several items per page, one per quote."""

import scrapy

from zoo import SITE


class QuotesSpider(scrapy.Spider):
    name = "quotes"
    start_urls = [
        f"{SITE}/page/1/",
    ]

    def parse(self, response):
        for quote in response.css("div.quote"):
            yield {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("div.tags a.tag::text").getall(),
            }

        next_page = response.css("li.next a::attr(href)").get()
        if next_page is not None:
            yield response.follow(next_page, callback=self.parse)
