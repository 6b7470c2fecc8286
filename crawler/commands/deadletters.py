"""``scrapy deadletters SPIDER [--json] [--reason TEXT]``: what the crawl gave up on."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import open_crawl, run_guarded
from crawler.connection import sync_client


def read_letters(client: Any, key: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Every dead letter as stored, with its decoded form (or the raw text)."""
    out = []
    for raw in client.lrange(key, 0, -1):
        try:
            letter = json.loads(raw)
            if not isinstance(letter, dict):
                raise ValueError
        except ValueError:
            letter = {"reason": "unreadable dead letter", "entry": raw.decode("utf-8", "replace")}
        out.append((raw, letter))
    return out


def letter_url(letter: dict[str, Any]) -> str:
    if letter.get("url"):
        return str(letter["url"])
    try:
        return str(json.loads(letter.get("entry") or "")["url"])
    except (ValueError, KeyError, TypeError):
        return str(letter.get("entry", ""))[:100]


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> [--json] [--reason TEXT]"

    def short_desc(self) -> str:
        return "List the requests a distributed crawl gave up on, with their reasons"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object per line")
        parser.add_argument(
            "--reason", metavar="TEXT", help="only letters whose reason contains TEXT"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts))

    def _run(self, name: str, opts: argparse.Namespace) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        client = sync_client(crawl.url)
        letters = [
            letter
            for keys in crawl.config.partitions()
            for _, letter in read_letters(client, keys.dead)
            if not opts.reason or opts.reason in str(letter.get("reason", ""))
        ]
        client.close()
        for letter in letters:
            if opts.json:
                print(json.dumps(letter, ensure_ascii=False))
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.get("time") or 0))
                print(f"{when}  {letter.get('node', '-')}  {letter_url(letter)}")
                print(f"    {letter.get('reason')}")
                count = letter.get("count")
                if isinstance(count, int) and count > 1:
                    # A recrawl's revisit: one letter per page (commit.lua).
                    print(f"    its page's revisits failed {count} times; the latest is shown")
        if not opts.json:
            print(f"{len(letters)} dead letters in crawl {crawl.config.name!r}")
