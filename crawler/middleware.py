"""Spider middleware: cluster-wide dedupe of start requests, item identity."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware

from crawler.codec import ALLOW_OFFSITE, START_META, drop_start_mark
from crawler.deadletters import FailedResponses
from crawler.itemids import origin_id
from crawler.scheduler import RedisScheduler, redis_scheduler

#: Set this meta key on a start request to fetch it on every node and crawl.
DONT_DEDUPE_START = "crawler_dont_dedupe_start"


class DistributedSpiderMiddleware(BaseSpiderMiddleware):
    """Runs nearest the engine, so it sees exactly what the spider produced.

    * Start requests (``start_urls``, ``start()``) go through the shared
      seen-set, so N nodes starting the same spider fetch them once. Scrapy
      marks them ``dont_filter``; this middleware clears that, and the
      scheduler keys them apart from links to the same URL
      (``crawler.fingerprints.start_fingerprint``).
    * A ``dont_filter`` request is noted with its position among those of
      the callback's output identical to it
      (``RedisScheduler.note_made_by``): identical ones are each another
      request, with items of their own.
    * Each item is tagged with a stable identity: the fingerprint of the
      request whose response produced it (or the origin stored with it:
      ``RedisScheduler.item_basis``) and its position in the output, so
      re-processing after a crash stores it once.

    It has both the synchronous and the asynchronous ``process_spider_output``
    (from Scrapy's base class): an asynchronous-only one would make Scrapy
    turn every callback's output into an asynchronous generator, which costs
    a node several percent of its speed.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        # Per response being processed: [fingerprint of its request, items so far].
        self._items: WeakKeyDictionary[Response, list[Any]] = WeakKeyDictionary()
        # Per response being processed: dont_filter requests so far, by
        # content (RedisScheduler.made_key: counted apart, their order among
        # others may vary).
        self._again: WeakKeyDictionary[Response, dict[bytes, int]] = WeakKeyDictionary()
        self._start_items = 0  # items start() yielded so far
        self._failed = FailedResponses(crawler)
        crawler.signals.connect(self._forget, signal=signals.item_dropped)
        crawler.signals.connect(self._forget, signal=signals.item_error)
        crawler.signals.connect(self._spoiled, signal=signals.spider_error)

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    def get_processed_request(self, request: Request, response: Response | None) -> Request:
        if response is None and request.dont_filter and not request.meta.get(DONT_DEDUPE_START):
            start = request.replace(dont_filter=False)
            start.meta[START_META] = True  # and so a redirect of it (RedirectMiddleware)
            if not start.meta.get(ALLOW_OFFSITE):
                # What dont_filter also meant: OffsiteMiddleware lets a start
                # request through, and the redirects that copy it. Without
                # it, a start URL off allowed_domains (or redirected off
                # them) was filtered in silence.
                start.meta[ALLOW_OFFSITE] = START_META
            scheduler = self._scheduler()
            if scheduler is not None:
                scheduler.start_requests.add(start)
            return start
        if response is not None and request.dont_filter and response.request is not None:
            scheduler = self._scheduler()
            if scheduler is not None:
                counts = self._again.setdefault(response, {})
                scheduler.note_made_by(request, response.request, counts)
        return request

    def process_spider_input(self, response: Response) -> None:
        """The callback never sees the start mark (nor would the requests
        made with ``meta=response.meta`` carry it). A response that failed
        for good is dead-lettered here (``crawler.deadletters``)."""
        request = response.request
        if request is not None:
            drop_start_mark(request.meta)
        self._failed.check(response)

    def get_processed_item(self, item: Any, response: Response | None) -> Any:
        scheduler = self._scheduler()
        if scheduler is None or item is None:
            return item
        if response is None:  # yielded by start() itself, on every node
            scheduler.note_start_item(item, self._start_items)
            self._start_items += 1
            return item
        request = response.request
        if request is None:
            return item
        state = self._items.get(response)
        if state is None:
            state = self._items[response] = [scheduler.item_basis(request), 0]
        item_id = origin_id(state[0], state[1])
        scheduler.note_origin(item, item_id, request, state[1])
        state[1] += 1
        return item

    def _spoiled(self, response: Response | None, **kwargs: Any) -> None:
        """A callback raised: the items it did not get to yield are not
        taken for gone (crawler.itemids). Not ``start()`` (no response):
        this handler raised there, a second traceback in the log."""
        scheduler = self._scheduler()
        if scheduler is not None and response is not None and response.request is not None:
            scheduler.items.spoil(response.request)

    def _forget(self, item: Any, **kwargs: Any) -> None:
        scheduler = self._scheduler()
        if scheduler is not None:
            scheduler.forget_origin(item)
