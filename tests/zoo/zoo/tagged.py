"""A Request subclass of the project's own, with an attribute of its own
declared in ``attributes`` as Scrapy's ``Request.attributes`` docs describe
("used by Request.replace(), Request.to_dict() and request_from_dict()")."""

import scrapy


class TaggedRequest(scrapy.Request):
    attributes = (*scrapy.Request.attributes, "tag")

    def __init__(self, *args, tag=None, **kwargs):
        self.tag = tag
        super().__init__(*args, **kwargs)
