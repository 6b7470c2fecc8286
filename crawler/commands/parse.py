"""Scrapy's ``parse``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.parse import Command as _ScrapyParse

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyParse):
    pass
