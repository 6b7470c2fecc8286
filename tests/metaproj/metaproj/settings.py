"""Settings as `scrapy startproject` writes them, plus the framework's two."""

BOT_NAME = "metaproj"

SPIDER_MODULES = ["metaproj.spiders"]
NEWSPIDER_MODULE = "metaproj.spiders"

ADDONS = {"crawler.addon.DistributedCrawl": 0}
COMMANDS_MODULE = "crawler.commands"

ROBOTSTXT_OBEY = True
FEED_EXPORT_ENCODING = "utf-8"
