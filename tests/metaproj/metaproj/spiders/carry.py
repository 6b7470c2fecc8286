"""Passes what Scrapy users pass to the next page (Scrapy's "Passing
additional data to callback functions"), through Redis to whichever node
fetches it; each callback records the types it received in its item.

The demo site is a tree (page i links 3i+1..3i+3). From page 3 two requests
carry what cannot be stored as it is: page 10 a lock (never storable), page
11 a ``metaextra.Money`` item (outside the allow-list until the crawl's
CRAWLER_META_CLASSES names ``metaextra``).
"""

import threading
from datetime import date
from decimal import Decimal

import scrapy
from metaextra import Money

from metaproj.items import Page, Product


class CarrySpider(scrapy.Spider):
    name = "carry"

    def parse(self, response):
        yield {"url": response.url, "meta_types": {}, "kw_types": {}}
        yield from self.follow(response)

    def follow(self, response):
        number = int(response.url.rsplit("/", 1)[1].split(".")[0])
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            meta = {
                "page": Page(url=response.url, seen=date(2024, 2, 29)),
                "product": Product("tea", Decimal("19.99"), date(2024, 1, 2)),
                "day": date(2024, 2, 29),
                "raw": b"\x00\xff",
                "pair": (number, "one"),
            }
            if number == 3 and url.endswith("/10.html"):
                meta["lock"] = threading.Lock()
            if number == 3 and url.endswith("/11.html"):
                meta["money"] = Money(amount=Decimal("2.50"), currency="EUR")
            yield scrapy.Request(
                url,
                callback=self.parse_child,
                meta=meta,
                cb_kwargs={"price": Decimal("1.10"), "pair": (1, 2), "raw": b"x"},
            )

    def parse_child(self, response, price, pair, raw):
        keys = ("page", "product", "day", "raw", "pair", "money")
        meta = {k: response.meta[k] for k in keys if k in response.meta}
        kwargs = {"price": price, "pair": pair, "raw": raw}
        yield {
            "url": response.url,
            "meta_types": {k: type(v).__name__ for k, v in meta.items()},
            "kw_types": {k: type(v).__name__ for k, v in kwargs.items()},
            "page_seen": type(meta["page"]["seen"]).__name__,
            "product_price": meta["product"].price,
            "pair": list(meta["pair"]),
            "money": dict(meta["money"]) if "money" in meta else None,
        }
        yield from self.follow(response)
