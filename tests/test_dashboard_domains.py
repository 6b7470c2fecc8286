"""The dashboard's domain table, read from a real Redis (apart from
test_dashboard.py, whose module-wide crawl keeps nodes running against the
worker's Redis: they would crawl what a test here seeds)."""

from __future__ import annotations

from scrapy.settings import Settings

from crawler.config import crawl_keys
from crawler.dashboard.data import detail
from tests.conftest import SiteServer, run_scrapy


def test_robots_column_finds_a_site_on_another_port(redis_url, rclient):
    """The robots.txt of a site on a non-default port is kept under its
    ``scheme://host:port``; the domain table named it "none cached" because
    it looked only at the default ports of the domain."""
    site = SiteServer(3)
    try:
        assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
        settings = Settings({"REDIS_URL": redis_url})
        keys = crawl_keys(settings, "site")
        origin = site.url("/").rstrip("/")
        assert ":" in origin.partition("://")[2], origin  # a port of its own
        rclient.set(keys.robots(origin), b"BUser-agent: *\nDisallow:\n")
        top = detail(rclient, settings, "site")["domains"]["top"]  # type: ignore[index]
        assert [(row["domain"], row["robots"]) for row in top] == [("127.0.0.1", "fetched")]
    finally:
        site.close()
