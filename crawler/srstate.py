"""What a scrapy-redis 0.9 crawl left in Redis, read without changing it.

Its keys (scrapy-redis's defaults, or the same settings it reads)::

    SPIDER:requests     ZSET (PriorityQueue, score -priority) or LIST
                        (FifoQueue / LifoQueue, LPUSH): serialized
                        ``Request.to_dict()``; SCHEDULER_QUEUE_KEY.
    SPIDER:dupefilter   SET of hex fingerprints (see crawler/srfingerprint.py);
                        SCHEDULER_DUPEFILTER_KEY.
    NAME:start_urls     LIST, SET or ZSET of seeds; a RedisSpider's redis_key,
                        else REDIS_START_URLS_KEY.

Everything is read in pages (ZRANGE by rank, LRANGE, SSCAN), so a state of
millions of entries is never held in memory at once. Queue entries are
serialized by ``SCHEDULER_SERIALIZER``: pickle (``scrapy_redis.picklecompat``,
the default) or any module with ``loads``/``dumps``, JSON for this purpose.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from scrapy import Request, Spider
from scrapy.settings import BaseSettings
from scrapy_redis import defaults

from crawler.codec import build_request, request_class
from crawler.exceptions import BadEntry, ConfigError, CrawlerError

_LIFO = ("scrapy_redis.queue.LifoQueue", "scrapy_redis.queue.SpiderStack")


class Pickled(CrawlerError):
    """Raised when a queue entry is a pickle and pickles may not be read."""


@dataclass(frozen=True)
class SourceKeys:
    """The scrapy-redis keys of one spider."""

    queue: str
    dupefilter: str
    start_urls: str
    # A LifoQueue pops the newest entry first; the other queues the oldest.
    lifo: bool

    @classmethod
    def from_settings(cls, settings: BaseSettings, spider: Spider) -> SourceKeys:
        name = spider.name
        start = getattr(spider, "redis_key", None) or settings.get(
            "REDIS_START_URLS_KEY", defaults.START_URLS_KEY
        )
        queue_cls = settings.get("SCHEDULER_QUEUE_CLASS") or defaults.SCHEDULER_QUEUE_CLASS
        return cls(
            queue=_key(settings, "SCHEDULER_QUEUE_KEY", {"spider": name}),
            dupefilter=_key(settings, "SCHEDULER_DUPEFILTER_KEY", {"spider": name}),
            start_urls=str(start) % {"name": name},
            lifo=isinstance(queue_cls, str) and queue_cls in _LIFO,
        )


def _key(settings: BaseSettings, name: str, values: dict[str, str]) -> str:
    template = settings.get(name) or getattr(defaults, name)
    try:
        return str(template) % values
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{name}={template!r} is not a key template: {exc}") from None


async def size_of(client: Any, key: str) -> tuple[str, int]:
    """(Redis type, number of entries) of *key*; ("none", 0) if it is missing."""
    kind = (await client.type(key)).decode()
    count = {"list": client.llen, "set": client.scard, "zset": client.zcard}.get(kind)
    return kind, (await count(key) if count else 0)


async def queue_pages(client: Any, keys: SourceKeys, page: int) -> AsyncIterator[list[bytes]]:
    """The queue's entries, a page at a time, in the order scrapy-redis pops them."""
    kind, total = await size_of(client, keys.queue)
    if kind not in ("zset", "list", "none"):
        raise ConfigError(
            f"{keys.queue} is a {kind}, not a scrapy-redis queue (a sorted set or a list); "
            "check SCHEDULER_QUEUE_KEY."
        )
    for start in range(0, total, page):
        if kind == "zset":
            yield await client.zrange(keys.queue, start, start + page - 1)
        elif keys.lifo:
            yield await client.lrange(keys.queue, start, start + page - 1)
        else:  # FIFO: pushed on the left, popped from the right
            entries = await client.lrange(keys.queue, -start - page, -start - 1)
            yield entries[::-1]


async def fingerprint_pages(client: Any, keys: SourceKeys, page: int) -> AsyncIterator[list[bytes]]:
    """The dupefilter's fingerprints, a page at a time (SSCAN: one may come twice)."""
    kind = (await client.type(keys.dupefilter)).decode()
    if kind not in ("set", "none"):
        raise ConfigError(
            f"{keys.dupefilter} is a {kind}, not a scrapy-redis dupefilter (a set); "
            "check SCHEDULER_DUPEFILTER_KEY."
        )
    cursor: int | None = None
    while cursor != 0:
        cursor, members = await client.sscan(keys.dupefilter, cursor or 0, count=page)
        if members:
            yield members


def entry_dict(raw: bytes, allow_pickle: bool) -> dict[str, Any]:
    """The ``Request.to_dict()`` a queue entry holds. Raises Pickled for a
    pickle when *allow_pickle* is false, BadEntry if it is neither."""
    if raw[:1] == b"\x80":  # pickle protocol 2 and later; picklecompat uses the highest
        if not allow_pickle:
            raise Pickled()
        try:
            d = pickle.loads(raw)  # only with --allow-pickle: this runs code
        except Exception as exc:
            raise BadEntry(f"not a readable pickle: {type(exc).__name__}: {exc}") from None
    else:
        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadEntry("neither JSON nor pickle (check SCHEDULER_SERIALIZER)") from None
    if not isinstance(d, dict) or not isinstance(d.get("url"), str):
        raise BadEntry("not a request: no 'url'")
    return d


def request_from_entry(d: dict[str, Any], spider: Spider, classes: frozenset[str]) -> Request:
    """The request of a ``Request.to_dict()``, as scrapy-redis's
    ``request_from_dict`` builds it, but importing only classes in *classes*
    (CRAWLER_REQUEST_CLASSES) and resolving callbacks only to the spider's
    methods. Raises BadEntry with the reason."""
    # As a node reads an entry back: a class that cannot be loaded is this
    # entry's problem, not the import's (an ImportError stopped it).
    cls = request_class(d.get("_class"), classes, spider)
    kwargs = {key: value for key, value in d.items() if key in cls.attributes}
    for name in ("callback", "errback"):
        if not kwargs.get(name):
            kwargs.pop(name, None)  # scrapy-redis stores "" for none
    return build_request(cls, kwargs, spider)
