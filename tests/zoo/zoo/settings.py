"""Settings as `scrapy startproject` writes them, plus the framework's two."""

BOT_NAME = "zoo"

SPIDER_MODULES = ["zoo.spiders"]
NEWSPIDER_MODULE = "zoo.spiders"

# The framework: these two lines are all a project adds.
ADDONS = {"crawler.addon.DistributedCrawl": 0}
COMMANDS_MODULE = "crawler.commands"

ROBOTSTXT_OBEY = True

# The template's CONCURRENT_REQUESTS_PER_DOMAIN = 1 and DOWNLOAD_DELAY = 1 are
# left out: the site is the tests' own, on loopback.

FEED_EXPORT_ENCODING = "utf-8"
