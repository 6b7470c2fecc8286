"""An ordinary spider: follow every link, an item per page, the API's JSON
as items, failures recorded as items by an errback."""

import scrapy
from scrapy.http import TextResponse

from hostile import SITE


class HostileSpider(scrapy.Spider):
    name = "hostile"
    start_urls = [f"{SITE}/"]

    def parse(self, response):
        content_type = response.headers.get("Content-Type", b"").decode("latin-1")
        if "json" in content_type:
            yield from self.parse_api(response)
            return
        if not isinstance(response, TextResponse):
            yield {
                "url": response.url,
                "status": response.status,
                "length": len(response.body),
                "content_type": content_type,
                "magic": response.body[:4],
            }
            return
        yield from response.follow_all(css="a", errback=self.failed)
        text = " ".join(" ".join(response.css("body ::text").getall()).split())
        item = {
            "url": response.url,
            "status": response.status,
            "title": response.css("title::text").get(),
            "length": len(response.body),
            "encoding": response.encoding,
            "text": text[:80],
        }
        price = response.css(".price::text").get()
        if price is not None:
            item["price"] = float(price)
        yield item

    def parse_api(self, response, via=None):
        data = response.json()
        if isinstance(data, dict):
            for link in data.get("links", []):
                yield response.follow(
                    link, self.parse_api, errback=self.failed, cb_kwargs={"via": data.get("label")}
                )
            if via is not None:
                data["via"] = via
        yield data

    def failed(self, failure):
        response = getattr(failure.value, "response", None)
        yield {
            "failed_url": failure.request.url,
            "error": failure.type.__name__,
            "message": str(failure.value)[:200],
            "status": response.status if response is not None else None,
        }
