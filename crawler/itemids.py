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

logger = logging.getLogger(__name__)


def origin_id(fingerprint: bytes, position: int, salt: bytes = b"") -> bytes:
    """The id of the item at *position* in the output of the request with
    *fingerprint* (*salt* tells an errback's output from a callback's)."""
    return hashlib.sha1(fingerprint + salt + position.to_bytes(4, "big")).digest()[:12]


class ItemIds:
    def __init__(self, item_key: str) -> None:
        self.item_key = item_key
        self._origins: dict[int, tuple[Any, bytes]] = {}
        self._origins_of: dict[Request, list[int]] = {}
        self._warned_random_ids = False

    def note_origin(self, item: Any, item_id: bytes, request: Request) -> None:
        self._origins[id(item)] = (item, item_id)
        self._origins_of.setdefault(request, []).append(id(item))

    def forget(self, item: Any) -> None:
        """The item was dropped or failed in a pipeline."""
        self._origins.pop(id(item), None)

    def done(self, request: Request) -> None:
        """*request* is finished: forget its items' origins."""
        for item_key in self._origins_of.pop(request, ()):
            self._origins.pop(item_key, None)

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
                "An item reached the store without its origin (yielded by start(), or "
                "an item pipeline returned a new object), so it gets a random id and "
                "re-processing its page after a crash could store it twice. Return the "
                "item you were given from pipelines, or set CRAWLER_ITEM_KEY."
            )
        # Not from a response (or replaced by a pipeline): no stable identity.
        return uuid.uuid4().bytes[:12]
