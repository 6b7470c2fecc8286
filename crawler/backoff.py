"""429 and 503 answers pause their domain for the whole cluster.

A downloader middleware placed just inside Scrapy's RetryMiddleware sees the
answer first. It asks the frontier to pause the domain, for the
``Retry-After`` the site gave (seconds or an HTTP date) or for an exponential
backoff (``CRAWLER_BACKOFF_BASE``, doubling up to ``CRAWLER_BACKOFF_MAX``),
and puts the request back in the frontier: it is fetched again once the
domain's pause is over, by whichever node is free. After
``CRAWLER_BACKOFF_RETRIES`` pauses for one request (``CRAWLER_BACKOFF_RETRIES_503``
for a 503 without ``Retry-After``) the answer goes on to RetryMiddleware,
which retries it or gives up (and it is dead-lettered).
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawler.config import CrawlConfig
from crawler.download_events import robots_fetch
from crawler.politeness import slot_of
from crawler.scheduler import REQUEUE, RedisScheduler, redis_scheduler

logger = logging.getLogger(__name__)

BACKOFF_CODES = (429, 503)


def retry_after(value: bytes | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None if it says nothing usable."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isascii() and text.isdigit():  # "²" (0xB2) is a digit to isdigit()
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BackoffMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        config = CrawlConfig.from_settings(crawler.settings, crawler.spidercls.name)
        self.max_tries = config.backoff_retries
        self.max_tries_503 = min(config.backoff_retries_503, config.backoff_retries)
        self.max_pause = config.policy.backoff_max

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BackoffMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> Request | None:
        """A request leased before its domain was paused waits for the pause:
        it goes back to the frontier, which hands it out once the pause is over."""
        scheduler = self._scheduler()
        if scheduler is None or request not in scheduler.active or not scheduler.paused(request):
            return None
        self.crawler.stats.inc_value("crawler/backoff/held_back")
        return requeued(request, scheduler.origin_of(request))

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    def process_response(self, request: Request, response: Response) -> Request | Response:
        scheduler = self._scheduler()
        if scheduler is None:
            return response
        # A download the frontier did not hand out (FilesPipeline,
        # ImagesPipeline, a callback's engine.download()) pauses its domain
        # as a page does, and is made again once the pause is over (it
        # waits for its domain's turn, crawler.download_events). robots.txt
        # is left to Scrapy (a 4xx/5xx robots.txt allows everything, as there).
        leased = request in scheduler.active
        if not leased and robots_fetch(request):
            return response
        if response.status not in BACKOFF_CODES:
            if leased:  # a paused domain is back: its next backoff starts over
                scheduler.recovered(request)
            return response
        if request.meta.get("dont_retry"):
            return response
        tries = request.meta.get("backoff_times", 0)
        seconds = retry_after(response.headers.get(b"Retry-After"))
        # A 503 that names no time may be a broken page, not a busy site.
        most = self.max_tries_503 if response.status == 503 and seconds is None else self.max_tries
        if tries >= most:
            return response
        scheduler.backoff(request, -1 if seconds is None else seconds)
        self.crawler.stats.inc_value(f"crawler/backoff/{response.status}")
        logger.warning(
            "%s answered %d for %s; pausing it for the whole cluster (%s) and %s again afterwards.",
            slot_of(request),
            response.status,
            request.url,
            "exponential backoff"
            if seconds is None
            else f"Retry-After {min(seconds, self.max_pause):g}s",
            "fetching this page" if leased else "downloading it",
        )
        if leased:
            retry = requeued(request, scheduler.origin_of(request))
        else:
            retry = request.replace()
        retry.meta["backoff_times"] = tries + 1
        return retry


def requeued(request: Request, origin: bytes | None = None) -> Request:
    """*request* again, to go back to the frontier past the seen-set (it is
    in it already). Not ``dont_filter``, which Scrapy's RedirectMiddleware
    would copy to every redirect, so a redirect loop would never meet the
    seen-set: the scheduler takes this meta key off before storing it. Its
    value carries the item origin stored with *request* (hex), if any, so
    that its items keep their ids (crawler.codec.decode_entry)."""
    again = request.replace()
    again.meta[REQUEUE] = origin.hex() if origin else True
    return again
