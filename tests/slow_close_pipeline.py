"""A pipeline whose close_spider is slow, for the graceful-stop tests."""

from __future__ import annotations

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
