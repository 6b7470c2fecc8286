"""A module outside the project's packages: its classes are not in the meta
allow-list unless CRAWLER_META_CLASSES names it."""

import scrapy


class Money(scrapy.Item):
    amount = scrapy.Field()
    currency = scrapy.Field()
