"""The project's own item classes: in the meta allow-list by default."""

import dataclasses
from datetime import date
from decimal import Decimal

import scrapy


class Page(scrapy.Item):
    url = scrapy.Field()
    seen = scrapy.Field()


@dataclasses.dataclass
class Product:
    name: str
    price: Decimal
    added: date
