"""Requests that keep failing after their retries go to the dead-letter list.

A downloader middleware placed just outside Scrapy's RetryMiddleware sees
the download exceptions it gave up on. A response whose status is still in
``RETRY_HTTP_CODES`` is judged where it reaches the spider
(``crawler.middleware``, before Scrapy's HttpErrorMiddleware): a retry
middleware of the project's own, placed anywhere, may still send it again.
With Scrapy's RetryMiddleware on, such a response reaching the spider is
one it gave up on; with it off (``RETRY_ENABLED = False``, or replaced), one
the spider handles (``handle_httpstatus_list`` and the rest of
HttpErrorMiddleware's rules) is the spider's to retry, or not. The retry count travels
with the request (``meta["retry_times"]`` is part of its JSON), so retries
may run on any node and the cluster as a whole gives up after
``RETRY_TIMES``. ``StopDownload`` is a spider's own choice, not a failure.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, StopDownload
from scrapy.http import Response
from scrapy.utils.response import response_status_message

from crawler.politeness import domain_name
from crawler.scheduler import RedisScheduler, redis_scheduler
from crawler.scrapy_redis_settings import component_path

_HTTPERROR = "scrapy.spidermiddlewares.httperror.HttpErrorMiddleware"
_RETRY = "scrapy.downloadermiddlewares.retry.RetryMiddleware"


class DeadLetterMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DeadLetterMiddleware:
        return cls(crawler)

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    def process_exception(self, request: Request, exception: Exception) -> None:
        if not isinstance(exception, (IgnoreRequest, StopDownload)):
            name = type(exception).__name__
            _letter(self._scheduler(), request, f"{name}: {exception}".rstrip(": "))


class FailedResponses:
    """Which responses reaching the spider are failures to dead-letter: a
    status in ``RETRY_HTTP_CODES`` the spider does not handle (Scrapy's
    HttpErrorMiddleware rules), unless ``dont_retry``."""

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.retry_codes = {int(x) for x in settings.getlist("RETRY_HTTP_CODES")}
        self.allow_all = settings.getbool("HTTPERROR_ALLOW_ALL")
        self.allowed = {int(x) for x in settings.getlist("HTTPERROR_ALLOWED_CODES")}
        self.filtered = _enabled(settings, "SPIDER_MIDDLEWARES", _HTTPERROR)
        # Scrapy's RetryMiddleware gave up on any such response reaching the
        # spider, handled there or not.
        self.scrapy_retries = settings.getbool("RETRY_ENABLED") and _enabled(
            settings, "DOWNLOADER_MIDDLEWARES", _RETRY
        )

    def check(self, response: Response) -> None:
        request = response.request
        status = response.status
        if request is None or status not in self.retry_codes or request.meta.get("dont_retry"):
            return
        if not self.scrapy_retries and not self.withheld(response):
            return  # retried, if at all, by the spider or the project: it got the page
        reason = f"HTTP {response_status_message(status)}"
        _letter(redis_scheduler(self.crawler), request, reason)

    def withheld(self, response: Response, request: Request | None = None) -> bool:
        """Whether HttpErrorMiddleware keeps *response* (to *request*, when
        the response is not tied to it yet: a downloader middleware's) from
        the callback."""
        if not self.filtered or 200 <= response.status < 300:
            return False
        meta = response.meta if request is None else request.meta
        if meta.get("handle_httpstatus_all", False):
            return False
        if "handle_httpstatus_list" in meta:
            return response.status not in meta["handle_httpstatus_list"]
        if self.allow_all:
            return False
        # As HttpErrorMiddleware: the spider's list replaces the setting's.
        allowed = getattr(self.crawler.spider, "handle_httpstatus_list", self.allowed)
        return response.status not in allowed


def _enabled(settings: Any, name: str, path: str) -> bool:
    """Whether component *path* is on in the component setting *name*."""
    components = settings.getwithbase(name)
    return any(component_path(c) == path and o is not None for c, o in components.items())


def _letter(scheduler: RedisScheduler | None, request: Request, reason: str) -> None:
    # Only requests leased from the frontier: a robots.txt fetch or an
    # engine.download() of the spider's own was never queued, cannot be
    # requeued, and its failure is Scrapy's to log.
    if scheduler is not None and request in scheduler.active:
        tries = request.meta.get("retry_times", 0) + 1
        scheduler.dead_letter(request, f"{reason} (after {tries} attempts)")


def letter_entry(letter: dict[str, Any]) -> tuple[str, int]:
    """("<domain>|<entry JSON>", priority) of a dead letter that holds a request."""
    entry = letter.get("entry")
    if not isinstance(entry, str):
        raise ValueError("dead letter has no entry")
    data = json.loads(entry)
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise ValueError("dead letter's entry is not a request")
    meta = data.get("meta")
    slot = meta.get("download_slot") if isinstance(meta, dict) else None
    domain = domain_name(urlsplit(data["url"]).hostname if slot is None else slot)
    priority = data.get("priority", 0)
    return f"{domain}|{entry}", priority if isinstance(priority, int) else 0
