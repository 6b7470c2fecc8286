"""Items as Scrapy's docs declare them."""

from dataclasses import dataclass

import scrapy


@dataclass
class TestItem:
    """The generic spiders' examples' item (docs/topics/spiders.rst)."""

    id: str | None = None
    name: str | None = None
    description: str | None = None


class MyItem(scrapy.Item):
    """The ``start()`` example's item."""

    title = scrapy.Field()


class Page(scrapy.Item):
    """A page, passed to the next callback in meta and cb_kwargs."""

    url = scrapy.Field()
    title = scrapy.Field()


@dataclass
class Visit:
    """A dataclass item, passed to the next callback in meta and cb_kwargs."""

    url: str
    depth: int
