"""Scrapy's ``view``, run as plain Scrapy, without the add-on (crawler.commands._plain)."""

from scrapy.commands.view import Command as _ScrapyView

from crawler.commands._plain import OnThisMachine


class Command(OnThisMachine, _ScrapyView):
    pass
