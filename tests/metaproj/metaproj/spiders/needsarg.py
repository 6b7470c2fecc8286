"""A spider that needs an argument, as Scrapy's "Spider arguments" pass
one (``scrapy crawl needsarg -a site=URL``): ``__init__`` has no default
for it."""

import scrapy


class NeedsArgSpider(scrapy.Spider):
    name = "needsarg"

    def __init__(self, site, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_urls = [f"{site}/page/0.html"]

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all(css="a")
