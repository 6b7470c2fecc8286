"""Three ways Scrapy's docs let a spider own its failures, none of them a
request the crawl gave up on:

* ``noretry``: ``RETRY_ENABLED = False``, the spider handles 500 answers
  itself (``handle_httpstatus_list``) and asks for the page again;
* ``myretry``: a retry middleware of the project's own in place of
  Scrapy's RetryMiddleware;
* ``stopdl``: ``StopDownload(fail=True)`` from a ``headers_received``
  handler, the errback reading the headers it got.
"""

import scrapy
from scrapy import signals
from scrapy.exceptions import StopDownload


class NoRetrySpider(scrapy.Spider):
    name = "noretry"
    custom_settings = {"RETRY_ENABLED": False}
    handle_httpstatus_list = [500]

    def parse(self, response):
        if response.status == 500:
            yield response.request.replace(dont_filter=True)  # try again myself
            return
        yield {"url": response.url, "status": response.status}


class MyRetryMiddleware:
    """A project's own retry policy: 5xx answers again, up to 3 times."""

    def process_response(self, request, response):
        if response.status >= 500 and request.meta.get("my_retries", 0) < 3:
            again = request.replace(dont_filter=True)
            again.meta["my_retries"] = request.meta.get("my_retries", 0) + 1
            return again
        return response


class MyRetrySpider(scrapy.Spider):
    name = "myretry"
    custom_settings = {
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "metaproj.spiders.retries.MyRetryMiddleware": 500,
        }
    }

    def parse(self, response):
        yield {"url": response.url, "retries": response.meta.get("my_retries", 0)}


class StopDownloadSpider(scrapy.Spider):
    name = "stopdl"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.on_headers_received, signal=signals.headers_received)
        return spider

    def on_headers_received(self, headers, body_length, request, spider):
        raise StopDownload(fail=True)

    def __init__(self, urls="", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.urls = urls.split(",")

    async def start(self):
        for url in self.urls:
            yield scrapy.Request(url, errback=self.errback)

    def parse(self, response):
        yield {"url": response.url, "full": True}

    def errback(self, failure):
        response = failure.value.response
        yield {"url": response.url, "type": response.headers.get("Content-Type", b"").decode()}
