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
from crawler.keys import Keys


def read_letters(client: Any, keys: Keys, start: int = 0) -> list[tuple[bytes, dict[str, Any]]]:
    """Every dead letter of the crawl (partition) of *keys* from *start* (a
    negative start: the newest), as stored, with its decoded form (or the
    raw text). A recrawled page's letter is shown as its latest: the list
    keeps the page's first letter in place and {N}:deadpages the latest
    (commit.lua)."""
    out = []
    for raw in client.lrange(keys.dead, start, -1):
        try:
            letter = json.loads(raw)
            if not isinstance(letter, dict):
                raise ValueError
        except ValueError:
            letter = {"reason": "unreadable dead letter", "entry": raw.decode("utf-8", "replace")}
        out.append((raw, letter))
    _show_latest(client, keys, out)
    return out


def _show_latest(client: Any, keys: Keys, letters: list[tuple[bytes, dict[str, Any]]]) -> None:
    """Replace each recrawled page's letter in *letters* by its latest."""
    at = [n for n, (_, letter) in enumerate(letters) if _page(letter)]
    for first in range(0, len(at), _CHUNK):
        chunk = at[first : first + _CHUNK]
        latest = client.hmget(keys.deadpages, [_page(letters[n][1]) for n in chunk])
        for n, value in zip(chunk, latest, strict=True):
            if not value or not value.startswith(b"="):
                continue  # stored before the latest was kept apart: the list's is it
            try:
                shown = json.loads(value[1:])
            except ValueError:
                continue
            if isinstance(shown, dict):
                letters[n] = (letters[n][0], shown)


def _page(letter: dict[str, Any]) -> str:
    """The page of a recrawl's letter ({"page": hex, "count": n, ...}), or ""."""
    page = letter.get("page")
    return page if isinstance(page, str) and isinstance(letter.get("count"), int) else ""


_CHUNK = 1000


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
            for _, letter in read_letters(client, keys)
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
