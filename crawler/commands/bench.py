"""Scrapy's ``bench``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.bench import Command as _ScrapyBench

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyBench):
    pass
