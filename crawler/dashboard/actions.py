"""What the dashboard's buttons do: the same code as ``scrapy pause``,
``scrapy resume`` and ``scrapy requeue --reason``.

Who may press them is ``crawler.dashboard.server``'s business (the token)."""

from __future__ import annotations

from typing import Any

from scrapy.settings import Settings

from crawler.commands._common import open_crawl
from crawler.commands.pause import set_paused
from crawler.commands.requeue import requeue_letters
from crawler.dashboard.data import crawl_names, crawl_parts


class UnknownCrawl(LookupError):
    """Raised when an action names a crawl this Redis does not list."""


class Actions:
    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def _check(self, name: str) -> None:
        if name not in crawl_names(self.client):
            raise UnknownCrawl(f"no crawl {name!r} in this Redis")

    def pause(self, name: str, paused: bool) -> dict[str, Any]:
        """Pause or resume crawl *name* on every node."""
        self._check(name)
        set_paused(self.client, crawl_parts(self.client, self.settings, name), paused)
        return {"crawl": name, "paused": paused}

    def requeue(self, name: str, reason: str | None) -> dict[str, Any]:
        """Queue again the dead letters whose reason contains *reason*. It
        decodes requests as a node would, so the crawl's spider must be in
        this project (``scrapy requeue`` needs it too)."""
        self._check(name)
        crawl = open_crawl(self.settings, name)
        moved, skipped = requeue_letters(crawl, reason or None)
        return {"crawl": name, "requeued": moved, "left_in_place": skipped[:20]}
