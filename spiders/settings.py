"""Project settings. The framework's own settings (CRAWLER_*) and their
defaults are listed in crawler/default_settings.py."""

BOT_NAME = "spiders"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"
COMMANDS_MODULE = "crawler.commands"

ADDONS = {"crawler.addon.DistributedCrawl": 0}

ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"
