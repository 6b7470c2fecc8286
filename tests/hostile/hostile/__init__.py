"""The hostile site's project. The test sets ``HOSTILE_SITE`` to the base
URL of tests/hostile_site.py's server for every ``scrapy`` command it runs."""

import os

SITE = os.environ.get("HOSTILE_SITE", "http://127.0.0.1:8000")
