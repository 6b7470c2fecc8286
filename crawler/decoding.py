"""Leased frontier entries and raw seeds, turned into requests.

Everything read from Redis is untrusted: an entry that does not decode
(garbage, a pickle, a callback no longer on the spider, a class outside the
allow-list) and a seed line that is not one are dead-lettered with their
reason, never run. Raw seeds (a RedisSpider's ``redis_key``, the
scrapy-redis style ``SPIDER:start_urls``) become frontier pushes in the
same commit that consumes them.
"""

from __future__ import annotations

import logging
from typing import Any
from weakref import WeakKeyDictionary

from scrapy import Request, Spider
from w3lib.url import canonicalize_url

from crawler.codec import START_META, START_ORIGIN, decode_entry
from crawler.config import CrawlConfig
from crawler.exceptions import BadEntry
from crawler.fingerprints import redirected_start_fingerprint, start_fingerprint
from crawler.frontier import Batch, dead_letter
from crawler.politeness import request_entry
from crawler.scrapy_redis_compat import seed_fingerprint, seed_requests

logger = logging.getLogger(__name__)


class EntryDecoder:
    """The ``crawler.leases.Decoder`` of a running spider."""

    def __init__(self, spider: Spider, config: CrawlConfig, node: str, fingerprinter: Any) -> None:
        self.spider = spider
        self.config = config
        self.node = node
        self.fingerprinter = fingerprinter
        #: Requests decoded with an item origin stored in their entry.
        self.origins: WeakKeyDictionary[Request, bytes] = WeakKeyDictionary()

    def decode(self, lease_id: str, body: bytes, batch: Batch) -> Request | None:
        try:
            request, origin = decode_entry(body, self.spider, self.config.request_classes)
            if origin == START_ORIGIN:
                origin = start_fingerprint(self.fingerprinter.fingerprint(request))
                request.meta[START_META] = True
            elif origin is not None and self._redirected_start(request, origin):
                # A hop of a start request's redirect chain: its next hop is
                # one too (crawler.scheduler._redirected_start), as plain
                # Scrapy's redirects of a dont_filter request keep it. The
                # mark is never stored; without it, the hop after a stored
                # one was keyed as a link and dropped if that URL was seen.
                request.meta[START_META] = True
            if origin is not None:
                self.origins[request] = origin
            return request
        except BadEntry as exc:
            logger.error("Dead-lettering a malformed frontier entry: %s", exc)
            text = body.decode("utf-8", "replace")
            batch.deads.append((lease_id, dead_letter(f"malformed entry: {exc}", text, self.node)))
            return None

    def _redirected_start(self, request: Request, origin: bytes) -> bool:
        """Whether *origin* is the seen-set key the scheduler gave a redirect
        of a start request (``redirected_start_fingerprint``)."""
        chain = request.meta.get("redirect_urls")
        if len(origin) != 20 or not isinstance(chain, list) or not chain:
            return False
        if not isinstance(chain[0], str):  # not Scrapy's (a spider's own value)
            return False
        fp = self.fingerprinter.fingerprint(request)
        return origin == redirected_start_fingerprint(canonicalize_url(chain[0]), fp)

    def decode_raw(self, lease_id: str, raw: bytes, batch: Batch) -> None:
        """Turn a scrapy-redis style seed into queued requests (all or none)."""
        pushes: list[tuple[bytes | None, int, str]] = []
        try:
            for request in seed_requests(raw, self.spider, self.config):
                fp = seed_fingerprint(request, self.fingerprinter)
                origin = None
                if fp is not None and request.dont_filter:
                    # A RedisSpider's seed: a start request.
                    fp, origin = start_fingerprint(fp), START_ORIGIN
                # Not deduplicated: its items' ids from its content.
                entry = request_entry(request, self.spider, origin, by_content=fp is None)
                pushes.append((fp, request.priority, entry))
        except Exception as exc:  # a spider's make_request_from_data may raise anything
            text = raw.decode("utf-8", "replace")
            logger.error(
                "Dead-lettering seed %r from %s: %s", text[:200], self.config.keys.start_urls, exc
            )
            batch.deads.append((lease_id, dead_letter(f"bad seed: {exc}", text, self.node)))
            return
        batch.pushes += pushes
        batch.raws.append(lease_id)
