"""``allowed_domains`` that leave out the host of a start URL (a site that
moved, a CDN, a typo): Scrapy fetches ``start_urls`` all the same (they are
``dont_filter``, which OffsiteMiddleware lets through, redirects included)
and filters only the links. The spider's argument ``site`` is the site's
address."""

import scrapy


class OffStartSpider(scrapy.Spider):
    name = "offstart"
    allowed_domains = ["example.com"]

    def __init__(self, site="http://127.0.0.1:8000", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_urls = [f"{site}/page/0.html"]

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all(css="a")  # off allowed_domains: filtered
