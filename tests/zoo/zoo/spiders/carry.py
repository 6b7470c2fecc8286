"""Scrapy's "Passing additional data to callback functions", with what
users put there: a ``scrapy.Item``, a dataclass item, dates and times,
``Decimal``, ``bytes``, tuples and sets, in ``cb_kwargs`` and in ``meta``.
Each callback records the types it received in its item."""

import dataclasses
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from scrapy import Request, Spider

from zoo import SITE
from zoo.items import Page, Visit

SENT = dict(
    day=date(2024, 2, 29),
    at=datetime(2024, 2, 29, 13, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    naive=datetime(2024, 2, 29, 13, 30, 15),
    clock=time(13, 30, 15),
    span=timedelta(days=1, seconds=5),
    price=Decimal("19.99"),
    raw=b"\x00\xff raw bytes",
    pair=(1, "one"),
    tags={"a", "b"},
)


def plain(value):
    """*value* as JSON, whatever its type, so an item can show it."""
    if isinstance(value, (Page, dict)):
        return {k: plain(v) for k, v in dict(value).items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


class CarrySpider(Spider):
    name = "carry"
    allowed_domains = ["127.0.0.1"]
    start_urls = [f"{SITE}/carry/0.html"]

    def parse(self, response):
        yield from self.follow_links(response)

    def follow_links(self, response):
        page = Page(url=response.url, title=response.css("title::text").get())
        visit = Visit(url=response.url, depth=response.meta["depth"])
        for href in response.css("a::attr(href)").getall():
            request = Request(
                response.urljoin(href),
                callback=self.parse_page2,
                cb_kwargs=dict(main_url=response.url, page=page, visit=visit, **SENT),
                meta=dict(page=page, visit=visit, **SENT),
            )
            request.cb_kwargs["foo"] = "bar"  # add more arguments for the callback
            yield request

    def parse_page2(self, response, main_url, foo, **received):
        meta = {k: response.meta[k] for k in ("page", "visit", *SENT)}
        yield dict(
            main_url=main_url,
            other_url=response.url,
            foo=foo,
            cb_kwargs_types={k: type(v).__name__ for k, v in received.items()},
            cb_kwargs_values=plain(received),
            meta_types={k: type(v).__name__ for k, v in meta.items()},
            meta_values=plain(meta),
        )
        yield from self.follow_links(response)
