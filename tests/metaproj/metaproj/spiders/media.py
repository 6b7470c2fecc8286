"""Scrapy's FilesPipeline as its docs set it up, on a polite crawl
(``DOWNLOAD_DELAY``): the pipeline downloads each item's ``file_urls``
through ``crawler.engine.download()``, past the scheduler. Plain Scrapy
sends them through the same downloader slot, so they keep the delay."""

import scrapy


class MediaSpider(scrapy.Spider):
    name = "media"
    custom_settings = {
        "ITEM_PIPELINES": {"scrapy.pipelines.files.FilesPipeline": 1},
        "DOWNLOAD_DELAY": 0.5,
        "DOWNLOAD_DELAY_JITTER": 0,
    }

    def parse(self, response):
        page = response.url.rsplit("/", 1)[1].split(".")[0]
        files = [response.urljoin(f"/file/{page}-{k}.bin") for k in range(3)]
        yield {"url": response.url, "file_urls": files}
