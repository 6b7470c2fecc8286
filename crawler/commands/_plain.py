"""Scrapy's commands for looking at a page or a spider on this machine
(``shell``, ``fetch``, ``view``, ``parse``, ``check``, ``bench``), run as
plain Scrapy: without the add-on.

With it, each of them joined the crawl of its spider as a node: the
request it makes cannot be stored in Redis (a callback of the command's
own, a ``SequenceExclude`` in ``meta``), so it was dead-lettered and the
command hung (``shell``), printed nothing and exited 0 (``fetch``), or
crawled the whole frontier before reporting nothing (``parse``, and
``check``'s "0 contracts, OK"), leaving a dead letter that made the real
crawl exit 3.
"""

from __future__ import annotations

from typing import Any

from scrapy.settings import BaseSettings

from crawler.scrapy_redis_settings import component_path

ADDON = "crawler.addon.DistributedCrawl"


def without_addon(settings: BaseSettings) -> None:
    """Turn the framework's add-on off in *settings*, as ``None`` does."""
    addons = settings["ADDONS"]
    for addon in list(addons):
        if component_path(addon) == ADDON:
            addons.set(addon, None, "cmdline")


class OnThisMachine:
    """A Scrapy command, run without the add-on."""

    settings: Any

    def process_options(self, args: list[str], opts: Any) -> None:
        super().process_options(args, opts)  # type: ignore[misc]
        without_addon(self.settings)
