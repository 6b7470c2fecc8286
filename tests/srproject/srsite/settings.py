"""A plain scrapy-redis 0.9 project, set up as scrapy-redis's README shows,
without this framework: its state in Redis is what ``scrapy migrate``
imports (tests/test_migrate.py). REDIS_URL comes from the environment."""

import os

BOT_NAME = "srsite"
SPIDER_MODULES = ["srsite.spiders"]

SCHEDULER = "scrapy_redis.scheduler.Scheduler"
DUPEFILTER_CLASS = "scrapy_redis.dupefilter.RFPDupeFilter"
SCHEDULER_PERSIST = True
REDIS_URL = os.environ["REDIS_URL"]

ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
