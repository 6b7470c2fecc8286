"""Scrapy's HTTP handler, stalling the event loop right after it starts a
request, before the request can be written: as a garbage collection or a
busy callback can (a full collection took 74-83 ms in a node's process).
For tests/test_politeness.py."""

from __future__ import annotations

import time

from scrapy import Request
from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.http import Response
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future

STALL = 0.15  # seconds


class StallingHandler(HTTP11DownloadHandler):
    """Stalls after the pages whose number is even (/page/0.html, ...): the
    next request, not stalled, would otherwise close in on it."""

    async def download_request(self, request: Request) -> Response:
        started = deferred_from_coro(super().download_request(request))  # runs to its first wait
        page = request.url.rsplit("/", 1)[-1].removesuffix(".html")
        if page.isdigit() and int(page) % 2 == 0:
            time.sleep(STALL)
        return await maybe_deferred_to_future(started)
