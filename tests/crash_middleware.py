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


class FailOnPages:
    """Raises in the spider (a spider error, counted by Scrapy in
    ``spider_exceptions/count``) for pages whose number is a multiple of
    ``FAIL_EVERY``, page 0 (the seed) excepted."""

    def process_spider_input(self, response: Any) -> None:
        number = response.url.rsplit("/", 1)[-1].split(".")[0]
        if number.isdigit() and int(number) and int(number) % int(os.environ["FAIL_EVERY"]) == 0:
            raise ValueError(f"failing on purpose on {response.url}")
