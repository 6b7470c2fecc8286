"""The base class of the framework's Scrapy commands.

It lives outside ``crawler.commands`` because Scrapy turns every command
class defined in that package into a command of its own.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from scrapy.utils.conf import arglist_to_dict


class CrawlCommand(ScrapyCommand):
    """Base of the framework's commands: they need the project, talk to
    Redis only (no crawler process) and log warnings only."""

    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_LEVEL": "WARNING"}
    #: The spider's arguments (-a NAME=VALUE, as `scrapy crawl` takes them):
    #: a spider whose __init__ needs one cannot be made without it.
    spider_args: dict[str, str] = {}

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-a",
            dest="spargs",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="set a spider argument, as `scrapy crawl -a` does (may be repeated)",
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        try:
            self.spider_args = arglist_to_dict(opts.spargs)
        except ValueError:
            raise UsageError("Invalid -a value, use -a NAME=VALUE", print_help=False) from None
