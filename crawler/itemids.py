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


def made_by(basis: bytes, position: int, salt: bytes = b"") -> bytes:
    """Where a ``dont_filter`` request came from: the *position*-th of those
    identical to it the callback (errback: *salt*) of the request with item
    basis *basis* yielded (not among all it yielded, nor all with its
    fingerprint: their order may vary from one run of the callback to the
    next, a set's of URLs or of cb_kwargs with each process's hash seed).
    Its items' ids derive from this and its content
    (``crawler.codec.encode_request``): identical requests one callback
    yields several times (Scrapy's ``dont_filter``: "perform an identical
    request multiple times") are each another request, and a replay of the
    callback after a crash makes each again with the same ids."""
    return basis + salt + position.to_bytes(4, "big")


#: What an item's id derives from: (the item, its id, its store mode, the
#: request it came from, its position in that request's callback output).
Origin = tuple[Any, bytes, str, Request | None, int | None]


class ItemIds:
    def __init__(self, item_key: str, recrawl: bool = False) -> None:
        self.item_key = item_key
        # Recrawl is on (crawler.recrawl): items are logged with their value.
        self.recrawl = recrawl
        #: id(item) -> (item, its id, mode, the request it came from, its
        #: position in the callback's output or None).
        #: Several for one id(): the same object yielded again before the
        #: store took it (an item filled and yielded once per row), each
        #: with its own id, taken in the order they were yielded.
        self._origins: dict[int, list[Origin]] = {}
        self._origins_of: dict[Request, list[int]] = {}
        self._warned_random_ids = False
        #: Revisits that found their page changed -> (the positions its last
        #: visit's items took, if known; whether those this visit leaves
        #: empty are removed).
        self._changed: dict[Request, tuple[int | None, bool]] = {}
        #: The callback positions of the items stored, by request.
        self._stored: dict[Request, set[int]] = {}
        #: Requests whose callback raised: what it did not yield is kept.
        self._spoiled: set[Request] = set()

    def mark_changed(
        self, request: Request, previous: int | None = None, trim: bool = True
    ) -> None:
        """*request* revisited its page and found it changed: its items
        replace the stored ones. *previous*: how many callback positions
        the page's items took at its last visit; with *trim*, those this
        visit leaves empty are removed (``settle``)."""
        self._changed[request] = (previous, trim)

    def spoil(self, request: Request) -> None:
        """*request*'s callback raised: the items it did not get to yield
        are not removed."""
        self._spoiled.add(request)

    def settle(self, request: Request) -> tuple[int | None, list[int]]:
        """(how many callback positions *request*'s page's items may take in
        the store now, None if not known; the positions whose items to
        remove), once its items are stored: a changed page yielding fewer
        items than before leaves no old item behind. Not with
        CRAWLER_ITEM_KEY (ids are not positions then)."""
        stored = self._stored.pop(request, set())
        if self.item_key:
            return None, []
        top = max(stored) + 1 if stored else 0
        if request not in self._changed:
            # A first visit, or an unchanged one (its count stands).
            return (top if stored else None), []
        previous, trim = self._changed[request]
        if previous is None:
            return top, []  # stored before counts were kept: from now on
        if trim and request not in self._spoiled:
            return top, [p for p in range(previous) if p not in stored]
        return max(previous, top), []

    def note_origin(
        self, item: Any, item_id: bytes, request: Request, position: int | None = None
    ) -> None:
        meta = request.meta
        if request in self._changed:
            mode = "!"  # its page changed since the last visit: it replaces
        elif self.recrawl or meta.get(STATE) or meta.get(AFTER):
            mode = "+"  # a version a later one may replace: logged with its value
        else:
            mode = ""
        self._origins.setdefault(id(item), []).append((item, item_id, mode, request, position))
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
        origin = (item, origin_id(basis, position), "", None, None)
        self._origins.setdefault(id(item), []).append(origin)

    def forget(self, item: Any) -> None:
        """The item was dropped or failed in a pipeline."""
        self._take(item)

    def _take(self, item: Any) -> Origin | None:
        """The first origin noted for *item* (the object), removed."""
        origins = self._origins.get(id(item))
        if not origins:
            return None
        if origins[0][0] is not item:
            # An item stored already left; its id(), freed, is this one's now.
            del self._origins[id(item)]
            return None
        origin = origins.pop(0)
        if not origins:
            del self._origins[id(item)]
        return origin

    def done(self, request: Request) -> None:
        """*request* is finished: forget its items' origins."""
        self._changed.pop(request, None)
        self._stored.pop(request, None)
        self._spoiled.discard(request)
        for item_key in self._origins_of.pop(request, ()):
            # An item stored already left; its id(), freed, may be a later
            # item's now, from another request: that one is kept.
            origins = self._origins.get(item_key)
            if origins is not None:
                origins[:] = [o for o in origins if o[3] is not request]
                if not origins:
                    del self._origins[item_key]

    def identify(self, item: Any) -> tuple[bytes, str, Request | None]:
        """The item's id, how commit.lua stores it ("" first write wins,
        "+" the same with its value in the item log, "!" it replaces) and
        the request it came from."""
        origins = self._origins.get(id(item))
        origin = origins[0] if origins else None
        if origin is None or origin[0] is not item:
            return self.item_id(item), "", None
        _, _, mode, request, position = origin
        if request is not None and position is not None:
            self._stored.setdefault(request, set()).add(position)
        return self.item_id(item), mode, request

    def item_id(self, item: Any) -> bytes:
        if self.item_key:
            value = ItemAdapter(item).get(self.item_key)
            if value is not None:
                return hashlib.sha1(f"key:{value}".encode()).digest()[:12]
        origin = self._take(item)
        if origin is not None:
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
