"""A distributed Scrapy crawler on Redis: one shared frontier, seen-set and
item store for any number of ``scrapy crawl`` nodes.

Enable it with the add-on ``crawler.addon.DistributedCrawl`` in ``ADDONS``
and ``COMMANDS_MODULE = "crawler.commands"``.
"""
