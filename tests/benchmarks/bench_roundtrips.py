"""A Scrapy extension for the benchmarks: counts Redis round trips on the
client side, the same way for every crawler.

redis-py sends every command, and every pipeline, with one call of its
connection's ``send_packed_command`` and then waits for the replies, so
counting those calls counts round trips (connection handshakes and health
check PINGs included), for the sync client (scrapy-redis) and the asyncio
one (this project) alike. The count is set as the stat
``bench/redis_roundtrips`` when the spider closes, after the scheduler has
closed, so it is in the node's final stats dump.

Enabled with ``-s EXTENSIONS={"tests.benchmarks.bench_roundtrips.RoundTripCounter": 0}``.
"""

from __future__ import annotations

import functools
from typing import Any

import redis.asyncio.connection as async_connection
import redis.connection as sync_connection
from scrapy import signals

_count = 0
_patched = False


def _patch() -> None:
    global _patched
    if _patched:
        return
    _patched = True
    sync_send = sync_connection.AbstractConnection.send_packed_command
    async_send = async_connection.AbstractConnection.send_packed_command

    @functools.wraps(sync_send)
    def counted_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _count
        _count += 1
        return sync_send(self, *args, **kwargs)

    @functools.wraps(async_send)
    async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _count
        _count += 1
        return await async_send(self, *args, **kwargs)

    sync_connection.AbstractConnection.send_packed_command = counted_sync  # type: ignore[method-assign]
    async_connection.AbstractConnection.send_packed_command = counted_async  # type: ignore[method-assign]


class RoundTripCounter:
    def __init__(self, crawler: Any) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Any) -> RoundTripCounter:
        _patch()
        ext = cls(crawler)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_closed(self, spider: Any, reason: str) -> None:
        self.stats.set_value("bench/redis_roundtrips", _count)
