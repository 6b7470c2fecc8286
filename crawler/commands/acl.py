"""``scrapy acl SPIDER --role ROLE``: the Redis ACL rules a role needs.

Prints an ``ACL SETUSER`` line to run as a Redis admin (see ``crawler.acl``
and the README's "Redis users and ACLs"). Needs no Redis itself.
"""

from __future__ import annotations

import argparse

from scrapy.exceptions import UsageError

from crawler import acl
from crawler.commandbase import CrawlCommand
from crawler.commands._common import CommandFailed, run_guarded, spider_class
from crawler.config import CrawlConfig
from crawler.exceptions import CrawlerError


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> --role {node,seeder,reader,follower,admin} [--user NAME]"

    def short_desc(self) -> str:
        return "Print the Redis ACL rules a crawl node, seeder, reader or admin needs"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--role", choices=acl.ROLES, required=True)
        parser.add_argument("--user", help="ACL user name (default: crawler-ROLE)")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts))

    def _run(self, name: str, opts: argparse.Namespace) -> None:
        assert self.settings is not None
        spider_class(self.settings, name)  # a clear error for an unknown spider
        try:
            config = CrawlConfig.from_settings(self.settings, name)
        except CrawlerError as exc:
            raise CommandFailed(str(exc)) from None
        user = opts.user or f"crawler-{opts.role}"
        rules = " ".join(acl.rules(opts.role, config.keys))
        print(f"ACL SETUSER {user} on >PASSWORD {rules}")
