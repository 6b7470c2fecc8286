"""A pipeline that takes its time over each item, for the recrawl fault
test: a page stays unacknowledged while its items are processed."""

from __future__ import annotations

import asyncio
from typing import Any


class SlowItemPipeline:
    async def process_item(self, item: Any) -> Any:
        await asyncio.sleep(4)
        return item
