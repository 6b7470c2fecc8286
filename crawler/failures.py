"""How a leased request's download ended, and what its errback yielded.

Two things a downloader middleware cannot see (``crawler.engine_hooks``):

* A failure raised by a downloader middleware's ``process_response`` (the
  redirect limit, a body over ``DOWNLOAD_MAXSIZE`` once decompressed, a
  broken gzip body) reaches no middleware's ``process_exception``, so
  ``DeadLetterMiddleware`` never saw it and the request vanished in silence.
  It is dead-lettered here. ``IgnoreRequest`` means "on purpose" in Scrapy
  (robots.txt, offsite, a cache miss, a user's own filter) and is not,
  except Scrapy's two limits above.
* Items an errback yields skip the spider middlewares, so they had no origin
  and got random ids (stored twice when the page was processed again). They
  get ids from their request here, as callback items do; the
  ``dont_filter`` requests it yields are noted with their position, as a
  callback's are (``crawler.middleware``).
"""

from __future__ import annotations

import logging
from typing import Any
from weakref import WeakSet

from itemadapter import is_item
from scrapy import Request
from scrapy.exceptions import IgnoreRequest, StopDownload
from twisted.python.failure import Failure

from crawler.codec import drop_start_mark
from crawler.itemids import origin_id

logger = logging.getLogger(__name__)

# IgnoreRequest messages of Scrapy's own limits: a failure, not a choice.
_LIMITS = ("max redirections reached", "Ignored response ")


class FailureWatch:
    """The scheduler's ``engine_hooks.SpiderCallWatcher``."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        #: Requests already dead-lettered (by DeadLetterMiddleware).
        self.lettered: WeakSet[Request] = WeakSet()
        self._positions: dict[bytes, int] = {}
        # dont_filter requests, as _positions, by content (crawler.middleware)
        self._requests: dict[bytes, dict[bytes, int]] = {}

    def failed(self, failure: Failure, request: Request) -> None:
        # Its errback runs next: as a callback (crawler.middleware), it does
        # not see the start mark, nor pass it on with the meta. (A hop of a
        # start URL's redirect chain has one: a request its errback made
        # with its meta was keyed as another hop of the chain.)
        drop_start_mark(request.meta)
        if request in self.lettered or request not in self.scheduler.active:
            return
        exc = failure.value
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, IgnoreRequest) and not str(exc).startswith(_LIMITS):
            self.scheduler.worker.count("crawler/ignored_requests")
            return
        if isinstance(exc, StopDownload):
            return  # the spider stopped it (its errback has the response)
        self.lettered.add(request)
        self.scheduler.dead_letter(request, reason)

    def errback_output(self, output: Any, request: Request) -> Any:
        if is_item(output):
            basis = self.scheduler.item_basis(request)
            position = self._positions.get(basis, 0)
            self._positions[basis] = position + 1
            self.scheduler.note_origin(output, origin_id(basis, position, b"errback"), request)
        elif isinstance(output, Request) and output.dont_filter:
            counts = self._requests.setdefault(self.scheduler.item_basis(request), {})
            self.scheduler.note_made_by(output, request, counts, b"errback")
        return output

    def done(self, request: Request) -> None:
        """*request* is finished: forget its errback's item positions."""
        if self._positions or self._requests:
            basis = self.scheduler.item_basis(request)
            self._positions.pop(basis, None)
            self._requests.pop(basis, None)
