"""A pipeline whose close_spider is slow, for the graceful-stop tests."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


class SlowClosePipeline:
    def process_item(self, item: Any) -> Any:
        return item

    def close_spider(self) -> None:
        time.sleep(4)
        with open(os.environ["SLOW_CLOSE_MARKER"], "w") as marker:
            marker.write("closed")


class AsyncSlowClosePipeline:
    """The same, with an ``async def close_spider`` (the node's own task
    runs meanwhile)."""

    def process_item(self, item: Any) -> Any:
        return item

    async def close_spider(self) -> None:
        await asyncio.sleep(4)
        with open(os.environ["SLOW_CLOSE_MARKER"], "w") as marker:
            marker.write("closed")
