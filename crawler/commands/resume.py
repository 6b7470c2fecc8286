"""``scrapy resume SPIDER``: nodes take requests again after ``scrapy pause``."""

from __future__ import annotations

from crawler.commands.pause import Command as Pause


class Command(Pause):
    paused = False

    def short_desc(self) -> str:
        return "Resume a paused distributed crawl"
