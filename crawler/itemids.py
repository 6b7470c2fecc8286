"""Stable item identities, so re-processing a page never stores an item twice.

An item's id is the fingerprint of the request whose response produced it
and its position in the callback's output (the spider middleware notes it),
or the value of ``CRAWLER_ITEM_KEY``. An item that reaches the store without
its origin (yielded by ``start()``, or replaced by a pipeline) gets a random
id, with a one-time warning.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from itemadapter import ItemAdapter
from scrapy import Request

from crawler.codec import encode_item

logger = logging.getLogger(__name__)

#: Request meta (crawler.recrawl): the page's recrawl state; seconds until
#: it is due again.
STATE = "crawler_recrawl"
AFTER = "recrawl_after"


def origin_id(fingerprint: bytes, position: int, salt: bytes = b"") -> bytes:
    """The id of the item at *position* in the output of the request with
    *fingerprint* (*salt* tells an errback's output from a callback's)."""
    return hashlib.sha1(fingerprint + salt + position.to_bytes(4, "big")).digest()[:12]


class ItemIds:
    def __init__(self, item_key: str, recrawl: bool = False) -> None:
        self.item_key = item_key
        # Recrawl is on (crawler.recrawl): items are logged with their value.
        self.recrawl = recrawl
        #: id(item) -> (item, its id, mode, the request it came from).
        self._origins: dict[int, tuple[Any, bytes, str, Request | None]] = {}
        self._origins_of: dict[Request, list[int]] = {}
        self._warned_random_ids = False
        self._changed: set[Request] = set()

    def mark_changed(self, request: Request) -> None:
        """*request* revisited its page and found it changed: its items
        replace the stored ones."""
        self._changed.add(request)

    def note_origin(self, item: Any, item_id: bytes, request: Request) -> None:
        meta = request.meta
        if request in self._changed:
            mode = "!"  # its page changed since the last visit: it replaces
        elif self.recrawl or meta.get(STATE) or meta.get(AFTER):
            mode = "+"  # a version a later one may replace: logged with its value
        else:
            mode = ""
        self._origins[id(item)] = (item, item_id, mode, request)
        self._origins_of.setdefault(request, []).append(id(item))

    def note_start_item(self, item: Any, position: int, spider: str) -> None:
        """*item* is the one at *position* among those ``start()`` yielded
        itself: every node runs ``start()`` and yields it, so its id (its
        position and content) is the same on each and it is stored once. An
        item another node yields at that position is another item, never
        refused as this one's copy (a start() that differs by node)."""
        try:
            content = encode_item(item).encode("utf-8", "surrogatepass")
        except Exception:  # not storable: the store says why
            content = b""
        basis = hashlib.sha1(f"start() items\0{spider}\0".encode() + content).digest()
        self._origins[id(item)] = (item, origin_id(basis, position), "", None)

    def forget(self, item: Any) -> None:
        """The item was dropped or failed in a pipeline."""
        self._origins.pop(id(item), None)

    def done(self, request: Request) -> None:
        """*request* is finished: forget its items' origins."""
        self._changed.discard(request)
        for item_key in self._origins_of.pop(request, ()):
            # An item stored already left; its id(), freed, may be a later
            # item's now, from another request: that one is kept.
            origin = self._origins.get(item_key)
            if origin is not None and origin[3] is request:
                del self._origins[item_key]

    def identify(self, item: Any) -> tuple[bytes, str]:
        """The item's id and how commit.lua stores it: "" first write wins,
        "+" the same with its value in the item log, "!" it replaces."""
        origin = self._origins.get(id(item))
        mode = origin[2] if origin is not None and origin[0] is item else ""
        return self.item_id(item), mode

    def item_id(self, item: Any) -> bytes:
        if self.item_key:
            value = ItemAdapter(item).get(self.item_key)
            if value is not None:
                return hashlib.sha1(f"key:{value}".encode()).digest()[:12]
        origin = self._origins.pop(id(item), None)
        if origin is not None and origin[0] is item:
            return origin[1]
        if not self._warned_random_ids:
            self._warned_random_ids = True
            logger.warning(
                "An item reached the store without its origin (an item pipeline "
                "returned a new object), so it gets a random id and "
                "re-processing its page after a crash could store it twice. Return the "
                "item you were given from pipelines, or set CRAWLER_ITEM_KEY."
            )
        # Not from a response (or replaced by a pipeline): no stable identity.
        return uuid.uuid4().bytes[:12]
