"""Scrapy's "SitemapSpider examples": follow the sitemaps a robots.txt names,
only those whose URL contains ``/sitemap_shops`` (a sitemap index, a plain
and a gzipped sitemap)."""

from scrapy.spiders import SitemapSpider

from zoo import SITE


class MySpider(SitemapSpider):
    name = "sitemap"
    sitemap_urls = [f"{SITE}/robots.txt"]
    sitemap_rules = [
        ("/shop/", "parse_shop"),
    ]
    sitemap_follow = ["/sitemap_shops"]

    def parse_shop(self, response):
        yield {"url": response.url, "title": response.css("title::text").get()}
