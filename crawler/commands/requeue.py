"""``scrapy requeue SPIDER [--reason TEXT]``: put dead letters back in the frontier."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import redis
from scrapy.exceptions import UsageError

from crawler.codec import encode_request
from crawler.commandbase import CrawlCommand
from crawler.commands._common import Crawl, open_crawl, run_guarded
from crawler.commands.deadletters import read_letters
from crawler.connection import async_client
from crawler.deadletters import letter_entry
from crawler.exceptions import BadSeed
from crawler.frontier import Frontier
from crawler.politeness import slot_of
from crawler.seeds import parse_seed


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> [--reason TEXT]"

    def short_desc(self) -> str:
        return "Queue dead-lettered requests again (all, or those whose reason contains TEXT)"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--reason", metavar="TEXT", help="only letters whose reason contains TEXT"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts.reason))

    @staticmethod
    def _entry(crawl: Crawl, letter: dict[str, Any]) -> tuple[str, int]:
        """The request to queue again. A rejected seed is untrusted input:
        it goes through the seed checks again rather than straight in."""
        if str(letter.get("reason", "")).startswith("bad seed:"):
            request = parse_seed(str(letter.get("entry", "")), crawl.spider, crawl.config)
            if request is None:
                raise ValueError("empty seed")
            entry = encode_request(request, crawl.spider)
            return f"{slot_of(request)}|{entry}", request.priority
        return letter_entry(letter)

    def _run(self, name: str, reason: str | None) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, name)
        client = redis.Redis.from_url(crawl.url)
        chosen, skipped = [], 0
        for raw, letter in read_letters(client, crawl.config.keys.dead):
            if reason and reason not in str(letter.get("reason", "")):
                continue
            try:
                entry, priority = self._entry(crawl, letter)
            except (ValueError, TypeError, BadSeed):
                skipped += 1
                continue
            chosen.append((raw, entry, priority))
        client.close()

        async def move() -> int:
            frontier = Frontier(
                async_client(crawl.url),
                crawl.config.keys,
                "requeue",
                crawl.config.seen,
                crawl.config.policy,
            )
            try:
                return await frontier.requeue_dead(chosen)
            finally:
                await frontier.client.aclose()

        moved = asyncio.run(move())
        note = (
            f"; {skipped} left in place (malformed, or a seed that still fails the seed checks)"
            if skipped
            else ""
        )
        print(f"requeued {moved} dead letters into crawl {crawl.config.name!r}{note}")
