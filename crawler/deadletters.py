"""Requests that keep failing after their retries go to the dead-letter list.

A downloader middleware placed just outside Scrapy's RetryMiddleware sees
exactly what it gave up on: a response whose status is still in
``RETRY_HTTP_CODES``, or a download exception. The retry count travels with
the request (``meta["retry_times"]`` is part of its JSON), so retries may
run on any node and the cluster as a whole gives up after ``RETRY_TIMES``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.response import response_status_message

from crawler.politeness import domain_name
from crawler.scheduler import RedisScheduler, redis_scheduler


class DeadLetterMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.retry_codes = {int(x) for x in crawler.settings.getlist("RETRY_HTTP_CODES")}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DeadLetterMiddleware:
        return cls(crawler)

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        if response.status in self.retry_codes and not request.meta.get("dont_retry"):
            self._letter(request, f"HTTP {response_status_message(response.status)}")
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        if not isinstance(exception, IgnoreRequest):
            name = type(exception).__name__
            self._letter(request, f"{name}: {exception}".rstrip(": "))

    def _letter(self, request: Request, reason: str) -> None:
        scheduler = self._scheduler()
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
