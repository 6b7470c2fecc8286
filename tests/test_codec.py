"""The request codec with real spiders: callbacks of Scrapy's own spider
classes, what users and Scrapy put in ``meta`` and ``cb_kwargs``, and what
must never load: pickles, non-methods, classes outside the allow-list."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import pickle
import sys
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import attrs
import pytest
import scrapy
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.http import HtmlResponse, XmlResponse
from scrapy.linkextractors import LinkExtractor
from scrapy.settings import Settings
from scrapy.spiders import CrawlSpider, Rule, SitemapSpider

from crawler.allowlist import allow_list_entries
from crawler.backoff import retry_after
from crawler.codec import (
    START_META,
    START_ORIGIN,
    _request_dict,
    decode_entry,
    decode_request,
    encode_item,
    encode_request,
)
from crawler.config import CrawlConfig
from crawler.exceptions import BadEntry, BadSeed, ConfigError
from crawler.itemids import ItemIds
from crawler.seeds import parse_seed
from crawler.srstate import request_from_entry
from crawler.values import UnstorableValue

CLASSES = frozenset({"scrapy.http.request.Request", "scrapy.http.request.form.FormRequest"})


class Page(scrapy.Item):
    url = scrapy.Field()
    price = scrapy.Field()
    tags = scrapy.Field()


@dataclasses.dataclass
class Product:
    name: str
    price: Decimal
    seen: dt.date | None = None
    derived: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        self.derived = self.name.upper()


@dataclasses.dataclass(frozen=True)
class Frozen:
    key: tuple[int, ...]


@attrs.define
class Offer:
    # A converter that must not run again on the value it already made.
    sku: list[str] = attrs.field(converter=lambda v: v.split(","))
    when: dt.datetime | None = None


class Colour(enum.Enum):
    RED = "red"


class Box:
    class Inner(scrapy.Item):
        x = scrapy.Field()


class Opaque:
    """Not an item: cannot be stored."""


class PlainSpider(Spider):
    name = "plain"

    def parse_page(self, response: Any, **kwargs: Any) -> None:
        return None

    def _private(self, response: Any) -> None:
        return None

    def __mangled(self, response: Any) -> None:
        return None

    def mangled(self) -> Any:
        return self.__mangled

    @staticmethod
    def static(response: Any) -> None:
        return None

    @classmethod
    def klass(cls, response: Any) -> None:
        return None

    some_callable = print


class Rules(CrawlSpider):
    name = "rules"
    rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

    def parse_page(self, response: Any) -> None:
        return None


class Sitemap(SitemapSpider):
    name = "sitemap"
    sitemap_urls = ["http://a/sitemap.xml"]

    def parse(self, response: Any) -> None:
        return None


def make(cls: type[Spider], **settings: Any) -> Spider:
    crawler = Crawler(cls, Settings({"TWISTED_REACTOR_ENABLED": False, **settings}))
    crawler._apply_settings()
    return cls.from_crawler(crawler)


def round_trip(request: Request, spider: Spider) -> Request:
    data = encode_request(request, spider)
    data.encode("utf-8")  # what redis-py does with it: must not raise
    return decode_request(data.encode("utf-8"), spider, CLASSES)


def test_callbacks_of_scrapys_spiders_private_ones_included():
    spider = make(PlainSpider)
    for callback in (spider.parse_page, spider._private, spider.mangled()):
        request = Request("http://a/", callback=callback, errback=spider._private)
        back = round_trip(request, spider)
        assert back.callback == callback and back.errback == spider._private
        assert _request_dict(request, spider) == request.to_dict(spider=spider)
    assert (
        json.loads(encode_request(Request("http://a/", callback=spider.mangled()), spider))[
            "callback"
        ]
        == "_PlainSpider__mangled"
    )

    rules = make(Rules)
    body = b'<a href="/x">the link</a>'
    response = HtmlResponse("http://a/", body=body, request=Request("http://a/"))
    [followed] = list(rules._requests_to_follow(response))
    back = round_trip(followed, rules)
    assert back.callback == rules._callback and back.errback == rules._errback
    assert back.meta == {"rule": 0, "link_text": "the link"}

    sitemap = make(Sitemap)
    xml = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
    xml += b"<url><loc>http://a/p</loc></url></urlset>"
    first = Request("http://a/sitemap.xml", callback=sitemap._parse_sitemap)
    assert round_trip(first, sitemap).callback == sitemap._parse_sitemap
    [page] = list(sitemap._parse_sitemap(XmlResponse("http://a/sitemap.xml", body=xml)))
    assert round_trip(page, sitemap).callback == sitemap.parse


@pytest.mark.parametrize(
    "name",
    [
        "__class__",
        "__init__",
        "__reduce__",
        "__getattribute__",
        "static",
        "klass",
        "some_callable",
        "name",
        "settings",
        "crawler",
        "logger",
        "nope",
        "",
        "_PlainSpider__x",
    ],
)
def test_callbacks_that_are_not_methods_of_the_spider_are_refused(name):
    spider = make(PlainSpider)
    with pytest.raises(BadEntry, match="not a method of spider"):
        decode_request(json.dumps({"url": "http://a/", "callback": name}), spider, CLASSES)


def test_an_instance_attribute_never_resolves():
    spider = make(PlainSpider)
    spider.parse_page = print  # shadows the method on this instance
    with pytest.raises(BadEntry, match="not a method"):
        decode_request('{"url":"http://a/","callback":"parse_page"}', spider, CLASSES)
    with pytest.raises(ValueError, match="not a method of spider"):
        encode_request(Request("http://a/", callback=lambda r: None), spider)


VALUES: dict[str, Any] = {
    "item": Page(url="http://a/", price=Decimal("9.99"), tags=("a", "b")),
    "nested_item": Box.Inner(x=Page(url="u")),
    "dataclass": Product("tea", Decimal("1.50"), dt.date(2024, 2, 29)),
    "frozen": Frozen((1, 2)),
    "attrs": Offer("a,b", dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)),
    "enum": Colour.RED,
    "date": dt.date(2024, 2, 29),
    "datetime": dt.datetime(2024, 3, 1, 10, 30, 15, 123456),
    "aware": dt.datetime(2024, 3, 31, 2, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    "offset": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    "fold": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    "time": dt.time(23, 59, 59, 1),
    "aware_time": dt.time(8, tzinfo=dt.UTC),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "decimal": Decimal("-0.000100"),
    "decimal_nan": Decimal("NaN"),
    "bytes": b"\x00\xff\x80",
    "bytearray": bytearray(b"ab"),
    "tuple": (1, (2, 3), [4, (5,)]),
    "empty_tuple": (),
    "set": {3, 1, 2},
    "frozenset": frozenset({"a", ("b", 1)}),
    "mixed_set": {1, "a", None},
    "int_keys": {1: "a", (2, 3): "b", None: "c", "s": "d"},
    "looks_like_tag": {"$t": "date", "v": "2024-01-01"},
    "tag_in_list": [{"$t": "tuple", "v": []}],
    "surrogate": "cut emoji \ud83d",
    "surrogate_key": {"k\udcff": "\udcff"},
    "big_int": 2**200,
    "huge_int": -(10**5000),
    "edge_int": 2**63,
    "nan": math.nan,
    "inf": math.inf,
    "minus_inf": -math.inf,
    "uuid": uuid.UUID(int=42),
    "nested": {"a": [{"b": (Decimal("1"), {b"k": dt.date(2000, 1, 1)})}]},
    "plain": {"a": [1, 2.5, "x", None, True], "b": {}},
}


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, dict | scrapy.Item):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a) or attrs.has(type(a)):
        return vars_of(a).keys() == vars_of(b).keys() and all(
            same(vars_of(a)[k], vars_of(b)[k]) for k in vars_of(a)
        )
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return bool(a == b)


def vars_of(obj: Any) -> dict[str, Any]:
    fields = dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else attrs.fields(type(obj))
    return {f.name: getattr(obj, f.name) for f in fields}


@pytest.mark.parametrize("key", list(VALUES))
def test_meta_and_cb_kwargs_round_trip_with_their_types(key):
    spider = make(PlainSpider)
    value = VALUES[key]
    request = Request(
        "http://a/", callback=spider.parse_page, meta={key: value}, cb_kwargs={"arg": value}
    )
    back = round_trip(request, spider)
    assert same(back.meta[key], value), (back.meta[key], value)
    assert same(back.cb_kwargs["arg"], value)


def test_the_stored_form_is_json_with_tags():
    spider = make(PlainSpider)
    data = json.loads(encode_request(Request("http://a/", meta={"d": dt.date(2024, 1, 2)}), spider))
    assert data["meta"] == {"d": {"$t": "date", "v": "2024-01-02"}}
    item = json.loads(encode_request(Request("http://a/", meta={"p": Page(url="u")}), spider))
    assert item["meta"]["p"] == {"$t": "item", "c": f"{__name__}:Page", "v": {"url": "u"}}
    # A meta dict whose own keys need a tag is one "dict" tag, and reads back.
    odd = {"$t": 1, 2: 3}
    assert round_trip(Request("http://a/", meta=odd), spider).meta == odd


def test_what_scrapy_puts_in_meta_round_trips():
    spider = make(Rules)
    meta = {
        "depth": 3,
        "download_slot": "a.example",
        "rule": 0,
        "link_text": "Next \u203a",
        "retry_times": 2,
        "redirect_times": 1,
        "redirect_ttl": 19,
        "redirect_urls": ["http://a/old"],
        "redirect_reasons": [301, "meta refresh"],
        "download_latency": 0.0123,
        "download_timeout": 180.0,
        "cache_timestamp": 1700000000.5,
        "is_start_request": True,
        "_auth_proxy": "http://p:8080",
        "_scheme_proxy": True,
        "proxy": None,
        "bindaddress": ("127.0.0.1", 0),
        "handle_httpstatus_list": [404],
        "autothrottle_dont_adjust_delay": True,
        "dont_obey_robotstxt": True,
        "cookiejar": 1,
        "cached_response": HtmlResponse("http://a/", body=b"x"),
    }
    back = round_trip(Request("http://a/", callback=spider._callback, meta=meta), spider)
    expected = {k: v for k, v in meta.items() if k != "cached_response"}
    assert same(back.meta, expected)


def test_live_objects_plugins_leave_in_a_retried_request_are_not_stored(monkeypatch):
    """A retry (RetryMiddleware, web_poet's Retry) copies meta and cb_kwargs:
    scrapy-playwright's open tab (``playwright_include_page``) and the page
    objects scrapy-poet injected were dead-lettered as unstorable, so a
    transient 500 or a page object's Retry lost the page (exit 3). They are
    this node's; the node that fetches the retry opens or builds its own."""

    class Injectable:  # web_poet.Injectable, without installing web-poet
        pass

    class BookPage(Injectable):
        def __init__(self) -> None:
            self.response = object()  # a live response: not storable

    monkeypatch.setitem(sys.modules, "web_poet", type(sys)("web_poet"))
    monkeypatch.setattr(sys.modules["web_poet"], "Injectable", Injectable, raising=False)
    spider = make(PlainSpider)
    request = Request(
        "http://a/",
        callback=spider.parse_page,
        meta={"playwright": True, "playwright_include_page": True, "playwright_page": object()},
        cb_kwargs={"page": BookPage(), "n": 1},
    )
    back = round_trip(request.copy(), spider)
    assert back.meta == {"playwright": True, "playwright_include_page": True}
    assert back.cb_kwargs == {"n": 1}


def test_values_that_cannot_be_stored_name_their_key_path_and_type():
    spider = make(PlainSpider)
    cases = {
        "meta['item']['price'] is a Opaque": {"item": Page(price=Opaque())},
        "meta['fh'] is a BufferedReader": {"fh": open(__file__, "rb")},
        "meta['f'] is a function": {"f": lambda: None},
        "meta['p'].price is a Opaque": {"p": Product("x", Opaque())},  # type: ignore[arg-type]
        "meta['s'][0] is a Opaque": {"s": (Opaque(),)},
        "meta['r'] is a HtmlResponse": {"r": HtmlResponse("http://a/", body=b"")},
    }
    for message, meta in cases.items():
        with pytest.raises(UnstorableValue) as info:
            encode_request(Request("http://a/", meta=meta), spider)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(UnstorableValue, match=r"cb_kwargs\['x'\] is a Opaque"):
        encode_request(Request("http://a/", cb_kwargs={"x": Opaque()}), spider)


def test_classes_outside_the_allow_list_are_neither_stored_nor_loaded():
    spider = make(PlainSpider)
    outside = type("Outside", (scrapy.Item,), {"__module__": "otherlib.items", "a": scrapy.Field()})
    with pytest.raises(UnstorableValue, match=r"otherlib\.items\.Outside is not in the meta class"):
        encode_request(Request("http://a/", meta={"o": outside(a=1)}), spider)
    # The lenient encoding of a dead letter keeps it; decoding refuses it.
    kept = encode_request(Request("http://a/", meta={"o": outside(a=1)}), spider, lenient=True)
    with pytest.raises(BadEntry, match=r"otherlib\.items\.Outside is not in the meta class"):
        decode_request(kept, spider, CLASSES)
    # Nothing outside the allow-list is imported: "this" prints on import.
    assert "this" not in sys.modules
    for kind in ("item", "dataclass", "attrs", "enum"):
        entry = {"url": "http://a/", "meta": {"x": {"$t": kind, "c": "this:s", "v": {}}}}
        with pytest.raises(BadEntry, match="not in the meta class allow-list"):
            decode_request(json.dumps(entry), spider, CLASSES)
    assert "this" not in sys.modules
    # An allowed module, but the name is not an item class of that kind.
    bad = {"url": "http://a/", "meta": {"x": {"$t": "item", "c": f"{__name__}:Opaque", "v": {}}}}
    with pytest.raises(BadEntry, match="is not a class of kind 'item'"):
        decode_request(json.dumps(bad), spider, CLASSES)
    with pytest.raises(BadEntry, match="not JSON"):
        decode_request(pickle.dumps({"url": "http://a/"}), spider, CLASSES)
    with pytest.raises(BadEntry, match="unknown value tag"):
        decode_request('{"url":"http://a/","meta":{"x":{"$t":"pickle","v":""}}}', spider, CLASSES)


def test_the_allow_list_comes_from_settings():
    settings = Settings({"SPIDER_MODULES": ["myproj.spiders", "solo"]})
    settings.set("CRAWLER_META_CLASSES", ["otherlib.items.Product", "lib2.*"])
    assert allow_list_entries(settings) == {"myproj", "solo", "otherlib.items.Product", "lib2"}
    settings.set("CRAWLER_META_CLASSES", ["", "x"])
    with pytest.raises(ConfigError, match="CRAWLER_META_CLASSES entry ''"):
        allow_list_entries(settings)
    spider = make(PlainSpider, CRAWLER_META_CLASSES=["otherlib"])
    outside = type("Outside", (scrapy.Item,), {"__module__": "otherlib.items", "a": scrapy.Field()})
    data = encode_request(Request("http://a/", meta={"o": outside(a=1)}), spider)
    assert json.loads(data)["meta"]["o"]["c"] == "otherlib.items:Outside"


def test_dead_letter_encoding_keeps_a_placeholder_that_never_decodes():
    spider = make(PlainSpider)
    request = Request("http://a/", callback=lambda r: None, meta={"fh": sys.stdout, "d": 1})
    data = encode_request(request, spider, lenient=True)
    stored = json.loads(data)
    assert stored["meta"]["fh"]["$t"] == "unstorable" and stored["meta"]["d"] == 1
    with pytest.raises(BadEntry):
        decode_request(data, spider, CLASSES)


def test_items_store_lone_surrogates():
    data = encode_item({"name": "cut emoji \ud83d", "ok": "caf\u00e9", "p": Decimal("1.5")})
    data.encode("utf-8")
    assert json.loads(data) == {"name": "cut emoji \ud83d", "ok": "caf\u00e9", "p": "1.5"}
    assert "caf\u00e9" in encode_item({"ok": "caf\u00e9"})  # no escapes when not needed


def test_seeds_name_public_callbacks_only():
    spider = make(PlainSpider)
    config = CrawlConfig.from_settings(spider.settings, "plain")
    seed = parse_seed('{"url": "http://a/", "callback": "parse_page"}', spider, config)
    assert seed is not None and seed.callback == spider.parse_page
    with pytest.raises(BadSeed, match="callback '_private' is private"):
        parse_seed('{"url": "http://a/", "callback": "_private"}', spider, config)
    with pytest.raises(BadSeed, match="not a method of spider"):
        parse_seed('{"url": "http://a/", "callback": "static"}', spider, config)


@pytest.mark.parametrize(
    "url, referer, relative",
    [
        ("http://h.example:8080/b", "http://h.example:8080/a?q=1", True),
        ("https://h.example/b", "https://h.example/", True),
        ("http://h.example:8080/b", "http://h.example:8081/a", False),  # another origin
        ("http://h.example/b", "https://h.example/a", False),
        ("http://h.example/b", "http://h.example", False),  # no path: kept whole
        ("http://h.example/b", "http://h.example.evil/a", False),
    ],
)
def test_a_referer_on_the_request_s_origin_is_stored_as_a_path(url, referer, relative):
    class S(Spider):
        name = "s"

    spider = S()
    request = Request(url, headers={"Referer": referer, "Accept": "text/html"})
    data = json.loads(encode_request(request, spider))
    assert ("ref" in data) is relative
    assert next(iter(data)) == "url"  # the scripts read the host right after it
    back = decode_request(json.dumps(data), spider, frozenset())
    assert back.headers.getlist("Referer") == [referer.encode()]
    assert back.headers.getlist("Accept") == [b"text/html"]


@pytest.mark.parametrize("ref", [5, "a/b", None])
def test_a_bad_relative_referer_is_a_bad_entry(ref):
    class S(Spider):
        name = "s"

    with pytest.raises(BadEntry, match="'ref' is not a path"):
        decode_request(json.dumps({"url": "http://h/", "ref": ref}), S(), frozenset())


class Tagged(Request):
    """A Request subclass with an attribute of its own named ``ref``."""

    attributes = (*Request.attributes, "ref")

    def __init__(self, *args, ref=None, **kwargs):
        self.ref = ref
        super().__init__(*args, **kwargs)


def test_a_request_class_s_own_ref_attribute_is_kept():
    """Such a ``ref`` is stored as it is, and a same-origin Referer beside
    it stays a header."""

    class S(Spider):
        name = "s"

    name = f"{Tagged.__module__}.{Tagged.__qualname__}"
    for headers in ({"Referer": "http://h.example/a"}, {}):
        request = Tagged("http://h.example/b", ref="campaign-7", headers=headers)
        data = encode_request(request, S())
        back = decode_request(data, S(), frozenset({name}))
        assert back.ref == "campaign-7"
        assert back.headers.getlist("Referer") == [v.encode() for v in headers.values()]


def test_an_item_origin_stored_with_a_request_comes_back_with_it():
    """A dont_filter request's (or a start request's) item origin is in its
    entry: each delivery of that entry, after a crash too, gives its items
    the same ids; the request itself and its meta do not carry it."""
    spider = make(Rules)
    request = Request("http://a/1", callback=spider.parse_page, dont_filter=True, meta={"k": 1})
    data = encode_request(request, spider, origin=b"\x01\x02nonce")
    for _ in range(2):  # a redelivery decodes the same bytes
        again, origin = decode_entry(data.encode("utf-8"), spider, CLASSES)
        assert origin == b"\x01\x02nonce"
        assert again.url == "http://a/1" and again.meta == {"k": 1} and again.dont_filter
    assert decode_entry(encode_request(request, spider), spider, CLASSES)[1] is None
    with pytest.raises(BadEntry, match="not hex"):
        decode_entry('{"url": "http://a/", "_o": "zz"}', spider, CLASSES)


def test_a_finished_request_keeps_another_requests_item_origin():
    """An item object seen again from another request (a spider reusing an
    object, or a stored item's id() reused by a new one): finishing the
    first request must not forget the second one's origin (it got a random
    id, with a warning, when a slow pipeline let the first finish later)."""
    ids = ItemIds("")
    first, second = Request("http://a/1"), Request("http://a/2")
    item = {"n": 1}
    ids.note_origin(item, b"first-id", first)
    assert ids.item_id(item) == b"first-id"  # stored: its origin is used up
    ids.note_origin(item, b"second-id", second)
    ids.done(first)
    assert ids.item_id(item) == b"second-id"


def _visit(ids: ItemIds, request: Request, stored: list[int]) -> None:
    """*request*'s callback yielded an item at each of *stored* (positions),
    and each reached the store."""
    for position in stored:
        item = {"p": position}
        ids.note_origin(item, b"id%d" % position, request, position)
        ids.identify(item)


@pytest.mark.parametrize(
    ("previous", "trim", "spoiled", "stored", "expected"),
    [
        (3, True, False, [0], (1, [1, 2])),  # 3 items, now 1: two removed
        (3, True, False, [0, 2], (3, [1])),  # a pipeline dropped the second
        (0, True, False, [0, 1], (2, [])),  # more than before
        (2, True, False, [], (0, [0, 1])),  # a 404: the page is gone
        (3, True, True, [0], (3, [])),  # the callback raised: the rest stays
        (3, False, False, [], (3, [])),  # a 500 the callback never saw
        (None, True, False, [0], (1, [])),  # stored before counts were kept
    ],
)
def test_a_changed_page_s_items_are_exactly_its_new_ones(previous, trim, spoiled, stored, expected):
    """ItemIds.settle: which positions of a changed page's items to remove
    from the store, and how many its recrawl state records."""
    ids, request = ItemIds(""), Request("http://a/1")
    ids.mark_changed(request, previous, trim)
    _visit(ids, request, stored)
    if spoiled:
        ids.spoil(request)
    assert ids.settle(request) == expected


def test_a_first_or_unchanged_visit_s_item_count():
    """A first visit records how many positions its items took; an unchanged
    one (no item) leaves the count its state carries; with CRAWLER_ITEM_KEY
    there is none (ids are not positions)."""
    ids, first, same = ItemIds(""), Request("http://a/1"), Request("http://a/2")
    _visit(ids, first, [0, 1])
    assert ids.settle(first) == (2, [])
    assert ids.settle(same) == (None, [])
    keyed, request = ItemIds("sku"), Request("http://a/3")
    keyed.mark_changed(request, 3)
    _visit(keyed, request, [0])
    assert keyed.settle(request) == (None, [])


def test_a_dont_filter_requests_item_origin_is_its_content():
    """The same request made again (a callback run again after a crash)
    gets the same origin, so its items are stored once; any other request,
    even to the same URL, gets its own."""
    spider = make(Rules)

    def origin(**kwargs: Any) -> bytes | None:
        request = Request("http://a/1", callback=spider.parse_page, dont_filter=True, **kwargs)
        data = encode_request(request, spider, by_content=True)
        return decode_entry(data, spider, CLASSES)[1]

    first = origin(meta={"page": 1})
    assert first is not None and len(first) == 8
    assert origin(meta={"page": 1}) == first
    assert origin(meta={"page": 2}) != first
    assert origin(cb_kwargs={"page": 1}) != first


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"X-Name": "café"}},  # Scrapy sends it as UTF-8
        {"headers": {"X-Raw": b"\xe9\xff"}},  # raw bytes, not UTF-8
        {"headers": {"X-Name": "привет"}, "encoding": "cp1251"},
        {"headers": {"X-Name": "café"}, "encoding": "latin-1"},
        {"method": "POST", "body": "café".encode(), "encoding": "latin-1"},
        {"method": "POST", "body": "привет".encode("cp1251"), "encoding": "cp1251"},
        {"method": "PUT", "body": b"\x00\xff\xfe", "encoding": "latin-1"},
        {"headers": {"Referer": "http://example.com/caf\xe9"}},  # stored as a path
    ],
)
def test_headers_and_bodies_go_out_as_the_bytes_they_were(kwargs):
    """Before, a header value was stored as latin-1 text and a body as
    UTF-8 text, and both were made again as str: Request encoded them with
    the request's encoding, so 'café' went out as caf\\xc3\\x83\\xc2\\xa9,
    b'\\xe9\\xff' as UTF-8, a latin-1 request's UTF-8 body as latin-1, and a
    cp1251 request with a Cyrillic header could not be made again at all."""
    spider = make(PlainSpider)
    request = Request("http://example.com/a", **kwargs)
    again = round_trip(request, spider)
    assert again.body == request.body
    assert again.headers == request.headers
    assert again.encoding == request.encoding
    for name, values in request.headers.items():
        assert again.headers.getlist(name) == values


def test_a_start_request_s_entry_marks_it_in_nine_bytes_and_keeps_no_meta_mark():
    """A start request's origin is derived again where it is leased
    (crawler.decoding), so its entry says only "s"; the meta mark that
    carries it through a redirect (START_META) is never stored."""
    spider = make(PlainSpider)
    request = Request("http://example.com/a", meta={START_META: True, "depth": 0})
    text = encode_request(request, spider, origin=START_ORIGIN)
    assert text.endswith(',"_o":"s"}') and START_META not in text, text
    again, origin = decode_entry(text.encode(), spider, CLASSES)
    assert origin == START_ORIGIN and again.meta == {"depth": 0}


def test_start_items_ids_are_their_position_and_content():
    """Every node runs start(): the same item at the same position gets the
    same id on each (stored once); another item there (a start() that
    differs by node, or changed since the last run) gets its own and is
    never refused as a copy."""

    def start_id(item: dict[str, Any], position: int, spider: str = "s") -> bytes:
        ids = ItemIds("")
        ids.note_start_item(item, position, spider)
        return ids.item_id(item)

    a, b = {"title": "A"}, {"title": "B"}
    assert start_id(a, 0) == start_id({"title": "A"}, 0)
    assert len({start_id(a, 0), start_id(b, 0), start_id(a, 1), start_id(a, 0, "t")}) == 4


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (b"120", 120.0),
        (b" 7 ", 7.0),
        (b"\xb2", None),
        (b"\xb9", None),
        (b"soon", None),
        (b"", None),
    ],
)
def test_retry_after_reads_seconds_and_ignores_what_is_not(header, seconds):
    """A non-ASCII digit ("²", the byte 0xB2) passed str.isdigit() and then
    float() raised: the page's first 429 was dead-lettered, its subtree lost
    (helper 32: 0 of 30 pages, plain Scrapy 30)."""
    assert retry_after(header) == seconds


def test_scrapys_own_request_classes_are_read_back_by_default():
    """Each request class scrapy.http offers is one a node reads back with
    the default CRAWLER_REQUEST_CLASSES: an XmlRpcRequest (Scrapy's docs)
    was dead-lettered on the node that leased it as a malformed entry."""
    from scrapy.http import FormRequest, JsonRequest, XmlRpcRequest

    spider = make(PlainSpider)
    classes = CrawlConfig.from_settings(spider.settings, "plain").request_classes
    made = [
        FormRequest("http://a/", formdata={"q": "x"}),
        JsonRequest("http://a/", data={"n": 1}),
        XmlRpcRequest("http://a/", methodname="get", params=(1,)),
    ]
    for request in made:
        back = decode_request(encode_request(request, spider).encode("utf-8"), spider, classes)
        assert type(back) is type(request)
        assert (back.method, back.body, back.dont_filter) == (
            request.method,
            request.body,
            request.dont_filter,
        )


def test_a_request_class_no_node_reads_back_is_refused_where_it_is_stored():
    """A request of a class outside CRAWLER_REQUEST_CLASSES and the
    project's packages (a plugin's Request subclass) was stored, then
    dead-lettered on whichever node leased it as a "malformed entry". It is
    refused where the spider yields it, with the class and what to do (the
    scheduler dead-letters it with that reason, its fingerprint unseen)."""
    from scrapy.http import FormRequest

    spider = make(PlainSpider, CRAWLER_REQUEST_CLASSES=["scrapy.http.request.Request"])
    request = FormRequest("http://a/", formdata={"q": "x"})
    name = "scrapy.http.request.form.FormRequest"
    with pytest.raises(ValueError, match=f"its class {name} is neither in CRAWLER_REQUEST_CLASSES"):
        encode_request(request, spider)
    # As a dead letter it is kept, to requeue once the class is added.
    letter = encode_request(request, spider, lenient=True)
    allowed = frozenset({"scrapy.http.request.Request", name})
    assert type(decode_request(letter.encode(), spider, allowed)) is FormRequest


def test_a_request_class_of_the_project_reads_back_and_nothing_else_it_holds_runs():
    """The project's own Request subclass reads back without being listed
    (the meta class allow-list); a name there that is not a Request class
    (the spider class itself) is refused, never called."""
    spider = make(PlainSpider)
    tagged = type("Tagged", (Request,), {"__module__": __name__})
    globals()["Tagged"] = tagged
    try:
        data = encode_request(tagged("http://a/"), spider)
        assert type(decode_request(data.encode(), spider, CLASSES)) is tagged
    finally:
        del globals()["Tagged"]
    data = json.dumps({"url": "http://a/", "_class": f"{__name__}.PlainSpider"})
    with pytest.raises(BadEntry, match="is not a Request class"):
        decode_request(data.encode(), spider, CLASSES)
    # Nor a Request class the project's module imports from elsewhere.
    data = json.dumps({"url": "http://a/", "_class": f"{__name__}.Request"})
    with pytest.raises(BadEntry, match="is not in CRAWLER_REQUEST_CLASSES"):
        decode_request(data.encode(), spider, CLASSES)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (f"{__name__}.Gone", "cannot load request class"),  # renamed since
        (f"{__name__}.gone.Tagged", "cannot load request class"),  # no such module
        (f"{__name__}.Request", "is not in CRAWLER_REQUEST_CLASSES"),  # imported here
    ],
)
def test_scrapy_migrate_reads_a_project_request_class_as_a_node_does(name, why):
    """An entry of a scrapy-redis queue naming a class of the project's
    packages that cannot be loaded is one rejected entry, as on a node (a
    NameError or ImportError stopped ``scrapy migrate`` halfway), and one
    the project only imports is refused there too."""
    spider = make(PlainSpider)
    with pytest.raises(BadEntry, match=why):
        request_from_entry({"url": "http://a/", "_class": name}, spider, CLASSES)


class PagedRequest(Request):
    """A Request subclass whose own attribute is not in ``attributes``."""

    def __init__(self, *args: Any, page: int = 0, **kwargs: Any) -> None:
        self.page = page
        super().__init__(*args, **kwargs)


def test_a_request_attribute_its_class_does_not_declare_is_refused_where_stored():
    """Request.to_dict() keeps only what ``attributes`` names: another node
    rebuilt this request with page=0 (the default), and its callback read
    another page number with nothing said. It is refused where the spider
    yields it, naming the attribute and what to do; one its class declares
    travels."""
    spider = make(PlainSpider)
    refused = r"its attribute 'page' is not in PagedRequest\.attributes"
    with pytest.raises(ValueError, match=refused):
        encode_request(PagedRequest("http://a/", page=3), spider)

    class Declared(PagedRequest):
        attributes = (*Request.attributes, "page")

    Declared.__module__ = __name__
    Declared.__qualname__ = "Declared"
    globals()["Declared"] = Declared
    try:
        data = encode_request(Declared("http://a/", page=3), spider)
        back = decode_request(data.encode(), spider, CLASSES)
        assert type(back) is Declared and back.page == 3
    finally:
        del globals()["Declared"]
