"""``scrapy requeue SPIDER [--reason TEXT]``: put dead letters back in the frontier."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from scrapy.exceptions import UsageError

from crawler.codec import decode_entry, encode_request, stored_referer
from crawler.commandbase import CrawlCommand
from crawler.commands._common import Crawl, open_crawl, run_guarded
from crawler.commands.deadletters import letter_url, read_letters
from crawler.connection import async_client, sync_client
from crawler.exceptions import BadEntry, BadSeed
from crawler.frontier import Frontier
from crawler.itemids import STATE
from crawler.politeness import slot_of, split_entry
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
        """The request to queue again, checked as a node would check it (so a
        class now in the allow-list passes, a value never stored does not).
        A rejected seed is untrusted input: it goes through the seed checks."""
        text = _request_json(letter)
        origin = None  # its items' ids, kept (crawler.codec.decode_entry)
        if str(letter.get("reason", "")).startswith("bad seed:"):
            request = parse_seed(text, crawl.spider, crawl.config)
            if request is None:
                raise ValueError("empty seed")
        else:
            request, origin = decode_entry(text, crawl.spider, crawl.config.request_classes)
        entry = encode_request(request, crawl.spider, origin=origin)
        return f"{slot_of(request)}|{entry}", request.priority

    def _run(self, name: str, reason: str | None) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        moved, skipped = requeue_letters(crawl, reason)
        _report(moved, skipped, crawl.config.name)


def requeue_letters(crawl: Crawl, reason: str | None) -> tuple[int, list[str]]:
    """Queue the crawl's dead letters whose reason contains *reason* (all
    for None) again: (how many moved, "url: why" of those left in place).
    Also used by ``scrapy dashboard``."""
    parts = crawl.config.partitions()
    chosen, skipped = _choose(crawl, reason)

    async def move() -> int:
        client = async_client(crawl.url)
        cfg = crawl.config
        try:
            moved = 0
            for keys, letters in zip(parts, chosen, strict=True):
                frontier = Frontier(client, keys, "requeue", cfg.seen, cfg.policy)
                moved += await frontier.requeue_dead(letters)
            return moved
        finally:
            await client.aclose()

    return asyncio.run(move()), skipped


def _choose(
    crawl: Crawl, reason: str | None
) -> tuple[list[list[tuple[bytes, str, int, int]]], list[str]]:
    """The letters to queue again, per partition: each goes back into the
    partition whose dead list holds it; and "url: why" of those left."""
    client = sync_client(crawl.url)
    parts = crawl.config.partitions()
    chosen: list[list[tuple[bytes, str, int, int]]] = [[] for _ in parts]
    skipped = []
    revisits = 0
    for n, keys in enumerate(parts):
        for raw, letter in read_letters(client, keys):
            if reason and reason not in str(letter.get("reason", "")):
                continue
            try:
                entry, priority = Command._entry(crawl, letter)
            except (ValueError, TypeError, BadSeed, BadEntry) as exc:
                skipped.append(f"{_url(letter)}: {_why(exc, letter)}")
                continue
            if _revisit(letter) and not str(letter.get("reason", "")).startswith(_UNSCHEDULED):
                # Its page stayed on the revisit schedule when its fetch
                # failed: queued again it was on it twice, for good (each
                # failing cycle added one more). Not one the frontier set
                # aside (a poison request, an entry no node could read):
                # that letter is the page's only place in the schedule.
                revisits += 1
                continue
            # A recrawled page's letter as read (its latest): one that failed
            # again meanwhile stays (requeue_dead.lua).
            count = letter.get("count") if letter.get("page") else 0
            chosen[n].append((raw, entry, priority, count if isinstance(count, int) else 0))
    client.close()
    if revisits:
        skipped.append(
            f"{revisits} revisit(s) of recrawled pages: still on the revisit schedule, "
            "fetched again when due (scrapy status shows what is due)"
        )
    return chosen, skipped


# Reasons of letters the frontier or a node wrote instead of the entry
# itself: a revisit among them left the schedule with it.
_UNSCHEDULED = ("delivered ", "malformed", "bad seed", "cannot store")


def _revisit(letter: dict[str, Any]) -> bool:
    """Whether the letter is a recrawl's revisit (its recrawl state in meta)."""
    try:
        stored = json.loads(_request_json(letter))
    except ValueError:
        return False
    meta = stored.get("meta") if isinstance(stored, dict) else None
    return isinstance(meta, dict) and isinstance(meta.get(STATE), dict)


_SHOWN = 20


def _report(moved: int, skipped: list[str], name: str) -> None:
    for line in skipped[:_SHOWN]:
        print(f"left in place: {line}")
    if len(skipped) > _SHOWN:
        print(f"... and {len(skipped) - _SHOWN} more (see scrapy deadletters)")
    note = f"; {len(skipped)} left in place (they would fail again as they are)" if skipped else ""
    print(f"requeued {moved} dead letters into crawl {name!r}{note}")


def _request_json(letter: dict[str, Any]) -> str:
    """The letter's entry; of a frontier entry a node could not decode
    ("<n>|<slot>|<json>", e.g. naming a class the allow-list now holds), its JSON."""
    text = str(letter.get("entry", ""))
    if text.startswith("{") or str(letter.get("reason", "")).startswith("bad seed:"):
        return text
    return split_entry(text.encode())[1].decode("utf-8", "replace")


def _url(letter: dict[str, Any]) -> str:
    return letter_url({**letter, "entry": _request_json(letter)})


def _why(exc: Exception, letter: dict[str, Any]) -> str:
    """Why a letter cannot be queued again, and what to do about it."""
    why = str(exc) or type(exc).__name__
    if "could not be stored" not in why:
        return why
    referer = None
    try:
        stored = json.loads(str(letter.get("entry")))
        referer = stored_referer(stored) if isinstance(stored, dict) else None
    except ValueError:
        pass
    where = f" ({referer})" if referer else ""
    return (
        f"{why}; once the spider is fixed, crawl the page that links to it{where} "
        "again, or seed this URL if its callback needs no meta"
    )
