"""Scrapy's "XMLFeedSpider example"."""

from scrapy.spiders import XMLFeedSpider

from zoo import SITE
from zoo.items import TestItem


class MySpider(XMLFeedSpider):
    name = "xmlfeed"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/feed.xml"]
    iterator = "iternodes"  # This is actually unnecessary, since it's the default value
    itertag = "item"

    def parse_node(self, response, node):
        self.logger.info("Hi, this is a <%s> node!: %s", self.itertag, "".join(node.getall()))

        item = TestItem()
        item.id = node.xpath("@id").get()
        item.name = node.xpath("name").get()
        item.description = node.xpath("description").get()
        return item
