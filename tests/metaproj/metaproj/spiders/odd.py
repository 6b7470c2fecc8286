"""Requests whose meta a node cannot store, from a callback and from
``start()``: a list nested 600 deep, a dict that holds itself, and a
dataclass whose ``field(init=False)`` was never set. Each is refused on its
own (dead-lettered with its key path); the good requests and items around
it are crawled as in plain Scrapy. (Plain Scrapy fetches the bad ones too;
a node cannot hand them to another.)

The demo site is a tree (page i links 3i+1..3i+3); the start page is
/page/0.html, and the spider's argument ``site`` is the site's address.
"""

import dataclasses

import scrapy


@dataclasses.dataclass
class Lazy:
    raw: str
    parsed: str = dataclasses.field(init=False)


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def holds_itself():
    value = {"a": 1}
    value["self"] = value
    return value


BAD = {"deep": nested(600), "cycle": holds_itself(), "lazy": Lazy("x")}


class OddSpider(scrapy.Spider):
    name = "odd"

    async def start(self):
        # One bad request first: the ones after it are still made.
        yield scrapy.Request(f"{self.site}/page/99.html", meta={"bad": BAD["lazy"]})
        yield scrapy.Request(f"{self.site}/page/0.html")

    def parse(self, response):
        if response.url.endswith("/page/0.html"):
            # More bad requests than Scrapy runs callback outputs at once
            # (CONCURRENT_ITEMS=100), first, then the good links, then the item.
            for i in range(120):
                bad = list(BAD.values())[i % 3]
                yield scrapy.Request(f"{self.site}/page/{200 + i}.html", meta={"bad": bad})
        for href in response.css("a::attr(href)").getall():
            yield scrapy.Request(response.urljoin(href))
        yield {"url": response.url}
