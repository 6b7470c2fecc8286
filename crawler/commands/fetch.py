"""Scrapy's ``fetch``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.fetch import Command as _ScrapyFetch

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyFetch):
    pass
