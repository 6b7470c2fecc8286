"""``scrapy migrate SPIDER --from-scrapy-redis``: take over a scrapy-redis crawl."""

from __future__ import annotations

import argparse
import asyncio
import sys

from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import CommandFailed, Crawl, open_crawl, run_guarded
from crawler.connection import async_client, redact
from crawler.exceptions import ConfigError
from crawler.migrate import Counts, EntryReader, Migration, Options
from crawler.partfrontier import make_frontier
from crawler.srfingerprint import matches_scrapy_redis
from crawler.srstate import SourceKeys, size_of

_FINGERPRINTER = "crawler.srfingerprint.ScrapyRedisFingerprinter"


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> --from-scrapy-redis [--allow-pickle] [--no-fingerprints] [--drop-unread]"

    def short_desc(self) -> str:
        return "Import a scrapy-redis crawl's queue, dupefilter and start URLs"

    def long_desc(self) -> str:
        return (
            "Import what a scrapy-redis crawl of SPIDER left in Redis: its queued requests "
            "(SCHEDULER_QUEUE_KEY) into this crawl's frontier, keeping their priorities, then "
            "its dupefilter's fingerprints (SCHEDULER_DUPEFILTER_KEY) into the seen-set; its "
            "start URLs stay where they are, where the nodes read them. The scrapy-redis keys "
            "are only read, and running it again imports nothing twice. Stop the scrapy-redis "
            "spiders first. The fingerprints are scrapy-redis's own, not Scrapy's: every node "
            f"needs REQUEST_FINGERPRINTER_CLASS = {_FINGERPRINTER!r}. Exit status 1 if "
            "anything was left out."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--from-scrapy-redis",
            action="store_true",
            help="import from scrapy-redis's keys (the only source there is)",
        )
        parser.add_argument(
            "--allow-pickle",
            action="store_true",
            help="also read pickled requests (scrapy-redis's default serializer). This RUNS "
            "CODE FROM REDIS: unpickling executes whatever the data says, so use it only if "
            "you trust everyone who can write to this Redis",
        )
        parser.add_argument(
            "--no-fingerprints",
            action="store_true",
            help="import the queued requests only: pages scrapy-redis fetched are fetched "
            "again when linked",
        )
        parser.add_argument(
            "--drop-unread",
            action="store_true",
            help="import the fingerprints even though some queued requests were not "
            "imported (pickled, rejected): those are then never fetched",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        if not opts.from_scrapy_redis:
            raise UsageError("say where from: --from-scrapy-redis (the only source for now)")
        options = Options(opts.allow_pickle, not opts.no_fingerprints, opts.drop_unread)
        run_guarded(self, lambda: self._run(args[0], options))

    def _run(self, name: str, options: Options) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name, record=True)
        if options.fingerprints and not matches_scrapy_redis(crawl.crawler.request_fingerprinter):
            raise CommandFailed(
                "scrapy-redis's dupefilter holds its own fingerprints, not Scrapy's (SHA1 of "
                "another document), so this crawl would not recognise them. Set "
                f"REQUEST_FINGERPRINTER_CLASS = {_FINGERPRINTER!r} in the project settings "
                "(every node must run with it) and run migrate again; or pass "
                "--no-fingerprints to import the queued requests only. Nothing was imported."
            )
        try:
            source = SourceKeys.from_settings(crawl.crawler.settings, crawl.spider)
            counts, start_urls = asyncio.run(_migrate(crawl, source, options))
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None
        for line in _warnings(counts, options):
            print(line, file=sys.stderr)
        print(_summary(crawl, source, counts, start_urls))
        if counts.unread or (options.fingerprints and not counts.fingerprints_imported):
            self.exitcode = 1


async def _migrate(
    crawl: Crawl, source: SourceKeys, options: Options
) -> tuple[Counts, tuple[str, int]]:
    client = async_client(crawl.url)
    config = crawl.config
    frontier = make_frontier(client, config, "migrate")
    reader = EntryReader(
        crawl.spider,
        crawl.crawler.request_fingerprinter,
        config.request_classes,
        options.allow_pickle,
    )
    try:
        counts = await Migration(frontier, source, reader, options).run()
        await frontier.register()
        return counts, await size_of(client, source.start_urls)
    finally:
        await client.aclose()


def _warnings(counts: Counts, options: Options) -> list[str]:
    lines = [f"rejected: {url or '(no URL)'}: {reason}" for url, reason in counts.examples]
    for reason, n in counts.rejected.most_common():
        lines.append(f"{n} queued requests rejected: {reason}")
    if counts.pickled:
        lines.append(
            f"{counts.pickled} queued requests are pickled (scrapy-redis's default "
            "SCHEDULER_SERIALIZER, scrapy_redis.picklecompat) and were not read: unpickling "
            "runs whatever code the data names, and anyone who can write to this Redis can "
            "put it there. If you trust them, run again with --allow-pickle."
        )
    if counts.queue_changed:
        before, after = counts.queue_changed
        lines.append(
            f"warning: the scrapy-redis queue changed while it was read ({before} entries, "
            f"then {after}): is a scrapy-redis spider still running? Stop it and run migrate "
            "again (running it again is safe)."
        )
    if options.fingerprints and not counts.fingerprints_imported:
        lines.append(
            f"fingerprints not imported: {counts.unread} queued requests were not, and their "
            "fingerprints are among scrapy-redis's: imported now, they would count as seen "
            "and never be fetched. Import those requests (see above) and run again, or pass "
            "--drop-unread to give them up."
        )
    return lines


def _summary(crawl: Crawl, source: SourceKeys, c: Counts, start_urls: tuple[str, int]) -> str:
    rejected = sum(c.rejected.values())
    lines = [
        f"migrated scrapy-redis crawl of spider {crawl.spider.name!r} into crawl "
        f"{crawl.config.keys.name!r} on {redact(crawl.url)}:",
        f"  requests      {c.requests} in {source.queue}: {c.queued} queued, {c.already} "
        f"already in this crawl, {rejected} rejected, {c.pickled} pickled (not read)",
        _fingerprints_line(source, c),
        _start_urls_line(crawl, source, start_urls),
    ]
    if c.requests == c.fingerprints == start_urls[1] == 0:
        lines.append(f"nothing to import: no scrapy-redis state of spider {crawl.spider.name!r}")
    elif c.queued == 0 and c.fingerprints_new == 0 and not c.unread:
        lines.append("nothing new: everything there was imported before")
    return "\n".join(lines)


def _fingerprints_line(source: SourceKeys, c: Counts) -> str:
    if not c.fingerprints_imported:
        why = "see above" if c.unread else "--no-fingerprints"
        return f"  fingerprints  not imported from {source.dupefilter} ({why})"
    already = c.fingerprints - c.fingerprints_new - c.fingerprints_bad
    bad = f", {c.fingerprints_bad} not fingerprints (skipped)" if c.fingerprints_bad else ""
    return (
        f"  fingerprints  {c.fingerprints} in {source.dupefilter}: {c.fingerprints_new} "
        f"added to the seen-set, {already} already there{bad}"
    )


def _start_urls_line(crawl: Crawl, source: SourceKeys, start_urls: tuple[str, int]) -> str:
    """scrapy-redis's seed key is where the nodes read seeds too, unless
    CRAWLER_START_URLS_KEY says otherwise: nothing to move."""
    kind, waiting = start_urls
    ours = crawl.config.keys.start_urls
    where = (
        "left in place: this crawl's nodes read them from there"
        if source.start_urls == ours
        else f"left in place, but this crawl reads {ours}: set CRAWLER_START_URLS_KEY = "
        f"{source.start_urls!r} or seed them with scrapy seed"
    )
    shown = "" if kind == "none" else f" ({kind})"
    return f"  start URLs    {waiting} in {source.start_urls}{shown}, {where}"
