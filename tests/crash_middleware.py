"""A spider middleware that kills its own node (SIGKILL) when it receives
one chosen page: a poison page, for the crash-loop tests."""

from __future__ import annotations

import os
import signal
from typing import Any


class CrashOnPage:
    def process_spider_input(self, response: Any) -> None:
        if response.url.endswith(os.environ["CRASH_ON_PATH"]):
            os.kill(os.getpid(), signal.SIGKILL)
