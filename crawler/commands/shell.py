"""Scrapy's ``shell``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.shell import Command as _ScrapyShell

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyShell):
    pass
