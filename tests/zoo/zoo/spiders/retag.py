"""One page read again on purpose (``dont_filter``) for each tag of a set,
the tag passed in cb_kwargs: the requests differ by cb_kwargs only (one
fingerprint), in another order in each process (each has its own hash
seed). Each reading's item keeps its id when the start page is processed
again, by this node or another."""

import scrapy

from zoo import SITE

TAGS = 19


class RetagSpider(scrapy.Spider):
    name = "retag"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/tree/0.html"]

    def parse(self, response):
        tags = {f"tag-{i}" for i in range(TAGS)}
        for tag in tags:
            yield scrapy.Request(
                f"{SITE}/tree/1.html",
                callback=self.parse_page,
                cb_kwargs={"tag": tag},
                dont_filter=True,
            )

    def parse_page(self, response, tag):
        yield {"url": response.url, "tag": tag}
