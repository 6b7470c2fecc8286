"""An extension that stalls its node's event loop right after Redis
granted a file its turn (crawler/lua/reserve.lua), before the file's
download handler is called: as a loaded machine, a garbage collection or a
busy callback can. For tests/test_media_downloads.py."""

from __future__ import annotations

import logging
import time
from typing import Any

from scrapy import Request

from crawler.download_events import DownloadEvents

logger = logging.getLogger(__name__)

STALL = 0.3  # seconds


class SlowTurns:
    """Stalls after every other file's turn on its node (the 1st, the
    3rd, ...): that file goes out late, and the next, not stalled, would
    close in on it."""

    def __init__(self) -> None:
        self.turns = 0
        turn = DownloadEvents.turn

        async def slow_turn(events: DownloadEvents, request: Request) -> None:
            await turn(events, request)
            if "/file/" in request.url:
                self.turns += 1
                if self.turns % 2:
                    logger.info("Stalling the event loop after the turn of %s", request.url)
                    time.sleep(STALL)

        DownloadEvents.turn = slow_turn  # type: ignore[method-assign]

    @classmethod
    def from_crawler(cls, crawler: Any) -> SlowTurns:
        return cls()
