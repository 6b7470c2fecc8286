"""The spider zoo: spiders written as Scrapy's and scrapy-redis's docs show
them, changed only in their URLs, which point at tests/zoosite.py's server.

The test sets ``ZOO_SITE`` to that server's base URL for every ``scrapy``
command it runs.
"""

import os

SITE = os.environ.get("ZOO_SITE", "http://127.0.0.1:8000")
