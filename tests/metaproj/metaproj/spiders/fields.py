"""An Item whose ``note`` field is set on one page only (Scrapy's docs'
Item, fields declared): plain Scrapy's CSV feed has a ``note`` column."""

import scrapy


class DocPage(scrapy.Item):
    url = scrapy.Field()
    title = scrapy.Field()
    note = scrapy.Field()


class FieldsSpider(scrapy.Spider):
    name = "fields"

    def parse(self, response):
        page = DocPage(url=response.url, title=response.css("title::text").get())
        if response.url.endswith("/7.html"):
            page["note"] = "the only note"
        yield page
        yield from response.follow_all(css="a")
