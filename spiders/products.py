"""Extracts structured product items from catalogue pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.http import Response


class ProductsSpider(scrapy.Spider):
    """Walk category listings (with pagination) and parse each product page.

    Listing pages link products with ``a.product`` and the next page with
    ``a.next``; a product page has ``h1.name``, ``.price``, ``.sku`` and
    ``.category``. The bundled demo site (``python -m crawler.demosite``)
    serves such pages.
    """

    name = "products"
    custom_settings = {"CRAWLER_ITEM_KEY": "sku"}

    def parse(self, response: Response) -> Iterator[Any]:
        for href in response.css("a.product::attr(href)").getall():
            yield response.follow(href, callback=self.parse_product)
        for href in response.css("a.category::attr(href), a.next::attr(href)").getall():
            yield response.follow(href, callback=self.parse)

    def parse_product(self, response: Response) -> Iterator[Any]:
        price = response.css(".price::text").get(default="").strip().lstrip("$")
        yield {
            "sku": response.css(".sku::text").get(default="").strip(),
            "name": response.css("h1.name::text").get(default="").strip(),
            "price": float(price) if price else None,
            "category": response.css(".category::text").get(default="").strip(),
            "url": response.url,
        }
