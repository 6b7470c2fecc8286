"""The project's spiders: ordinary scrapy.Spider classes, run distributed by
the crawler.addon.DistributedCrawl add-on enabled in spiders/settings.py."""
