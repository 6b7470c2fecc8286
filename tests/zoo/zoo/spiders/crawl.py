"""Scrapy's "CrawlSpider example", with the Rule arguments the docs describe:
``follow``, ``process_links``, ``process_request`` and ``errback``."""

from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

from zoo import SITE


class MySpider(CrawlSpider):
    name = "crawl"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/crawl/"]

    rules = (
        # Extract links matching 'category.php' (but not matching 'subsection.php')
        # and follow links from them (since no callback means follow=True by default).
        Rule(LinkExtractor(allow=(r"category\.php",), deny=(r"subsection\.php",))),
        # Extract links matching 'item.php' and parse them with the spider's method parse_item
        Rule(
            LinkExtractor(allow=(r"item\.php",)),
            callback="parse_item",
            follow=True,
            process_links="drop_print_versions",
            process_request="note_origin",
            errback="item_failed",
        ),
    )

    def drop_print_versions(self, links):
        return [link for link in links if "print=1" not in link.url]

    def note_origin(self, request, response):
        request.meta["found_on"] = response.url
        return request

    def parse_item(self, response):
        self.logger.info("Hi, this is an item page! %s", response.url)
        item = {}
        item["id"] = response.xpath('//td[@id="item_id"]/text()').re(r"ID: (\d+)")
        item["name"] = response.xpath('//td[@id="item_name"]/text()').get()
        item["description"] = response.xpath('//td[@id="item_description"]/text()').get()
        item["link_text"] = response.meta["link_text"]
        item["found_on"] = response.meta["found_on"]
        url = response.xpath('//td[@id="additional_data"]/@href').get()
        return response.follow(url, self.parse_additional_page, cb_kwargs=dict(item=item))

    def parse_additional_page(self, response, item):
        item["additional_data"] = response.xpath('//p[@id="additional_data"]/text()').get()
        return item

    def item_failed(self, failure):
        # As in "Accessing additional data in errback functions".
        yield dict(
            failed_url=failure.request.url,
            status=failure.value.response.status,
            found_on=failure.request.meta["found_on"],
        )
