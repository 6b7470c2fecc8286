"""Settings as `scrapy startproject` writes them, plus the framework's two
and the limits a careful user sets for a crawl of the open web."""

BOT_NAME = "hostile"

SPIDER_MODULES = ["hostile.spiders"]
NEWSPIDER_MODULE = "hostile.spiders"

# The framework: these two lines are all a project adds.
ADDONS = {"crawler.addon.DistributedCrawl": 0}
COMMANDS_MODULE = "crawler.commands"

ROBOTSTXT_OBEY = True

# Traps are endless: stop 4 links from the start page.
DEPTH_LIMIT = 4
DOWNLOAD_TIMEOUT = 2
DOWNLOAD_WARNSIZE = 1024 * 1024
DOWNLOAD_MAXSIZE = 5 * 1024 * 1024

FEED_EXPORT_ENCODING = "utf-8"
