"""Scrapy's ``check``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.check import Command as _ScrapyCheck

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyCheck):
    pass
