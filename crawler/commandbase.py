"""The base class of the framework's Scrapy commands.

It lives outside ``crawler.commands`` because Scrapy turns every command
class defined in that package into a command of its own.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand


class CrawlCommand(ScrapyCommand):
    """Base of the framework's commands: they need the project, talk to
    Redis only (no crawler process) and log warnings only."""

    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_LEVEL": "WARNING"}
