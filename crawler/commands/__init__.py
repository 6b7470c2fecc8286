"""Scrapy commands added by the framework: seed, export; crawl is wrapped for
clearer errors. Enabled by ``COMMANDS_MODULE = "crawler.commands"``."""
