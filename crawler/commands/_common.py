"""What the framework's commands share: finding the spider and the crawl."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import redis
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.settings import Settings
from scrapy.spiderloader import get_spider_loader

from crawler.config import CrawlConfig
from crawler.connection import check_reachable, resolve_url, sync_client
from crawler.exceptions import CrawlerError
from crawler.redis_errors import is_permission, is_transient, permission_message
from crawler.seenrecord import check_seen_config
from crawler.topology import fit_to_redis, with_partitions


def spider_class(settings: Settings, name: str) -> type[Spider]:
    """The spider class called *name*, or a UsageError listing the spiders."""
    loader = get_spider_loader(settings)
    try:
        return loader.load(name)
    except KeyError:
        known = ", ".join(sorted(loader.list())) or "none"
        raise CommandFailed(f"unknown spider {name!r}; spiders in this project: {known}") from None


@dataclass
class Crawl:
    crawler: Crawler
    spider: Spider
    config: CrawlConfig
    url: str


def open_redis(settings: Settings) -> str:
    """The Redis URL from the project settings, checked to be reachable."""
    try:
        url = resolve_url(settings)
        check_reachable(url)
    except CrawlerError as exc:
        raise CommandFailed(str(exc)) from None
    return url


def open_crawl(
    settings: Settings, name: str, record: bool = False, spider_args: dict[str, str] | None = None
) -> Crawl:
    """Build the crawler, spider and config for *name* and check Redis.
    *record*: the command writes to the crawl, so a new crawl's partitions
    are recorded (``crawler.partitions``)."""
    cls = spider_class(settings, name)
    settings = settings.copy()
    # Commands only read and write Redis; they never start a reactor.
    settings.set("TWISTED_REACTOR_ENABLED", False, "cmdline")
    # Nor do they run extensions: building Scrapy's (telnet, remote control
    # with aiohttp) would only add start-up time.
    settings.set("EXTENSIONS_BASE", {}, "cmdline")
    crawler = Crawler(cls, settings)
    try:
        # Applies add-ons and builds crawler.request_fingerprinter, as a
        # crawl does; the extensions built there check the settings (a bad
        # one raised a traceback here, where `scrapy crawl` says `error:`).
        crawler._apply_settings()
        config = CrawlConfig.from_settings(crawler.settings, cls.name)
        url = resolve_url(crawler.settings)
        check_reachable(url)
        config = fit_to_redis(config, url, cls)
        config = with_partitions(config, url, record)
    except CrawlerError as exc:
        raise CommandFailed(str(exc)) from None
    try:
        spider = cls.from_crawler(crawler, **(spider_args or {}))
    except TypeError as exc:
        # A spider whose __init__ needs an argument (Scrapy's spider
        # arguments): a traceback here before, and no way to pass it.
        raise CommandFailed(
            f"cannot make spider {name!r}: {exc}. Give it the arguments `scrapy crawl` "
            "gets, with -a NAME=VALUE."
        ) from None
    return Crawl(crawler, spider, config, url)


class CommandFailed(Exception):
    """Raised to stop a command with a message for the user and exit status 1."""


class CommandInterrupted(Exception):
    """Raised when Ctrl-C stopped a command: what it says of the work done."""


#: Exit status of a command stopped by Ctrl-C (the shells' 128 + SIGINT).
INTERRUPTED = 130


# The ACL role (crawler.acl) each command's user needs; the rest: admin.
_ROLES = {
    "crawl": "node",
    "seed": "seeder",
    "status": "reader",
    "crawls": "reader",
    "export": "reader",
    "deadletters": "reader",
}


def run_guarded(command: Any, body: Any, role: str = "") -> None:
    """Run *body*; on CommandFailed print ``error: ...`` and set exit status 1.
    *role*: the ACL role a refused permission names (by default the command's)."""
    try:
        body()
    except BrokenPipeError:
        # Output piped into `head` (or a pager quit early): what was wanted
        # was read. Python's exit would try to flush stdout again and print
        # a traceback; point it at nothing instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except CommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        command.exitcode = 1
    except (KeyboardInterrupt, CommandInterrupted) as exc:
        # Ctrl-C: one line, not a traceback (seed and export say what they
        # had done).
        said = str(exc) if isinstance(exc, CommandInterrupted) else ""
        print(f"interrupted (Ctrl-C){': ' + said if said else ''}", file=sys.stderr)
        command.exitcode = INTERRUPTED
    except redis.RedisError as exc:
        if is_permission(exc):
            name = type(command).__module__.rpartition(".")[2]
            role = role or _ROLES.get(name, "admin")
            print(f"error: {permission_message(exc, role)}", file=sys.stderr)
            if name == "migrate":
                # The admin role covers the crawl's keys, not scrapy-redis's
                # (helper 40: the advice alone could not be followed).
                print(
                    "migrate also reads the scrapy-redis crawl's keys (its queue, "
                    "dupefilter and start URLs, e.g. SPIDER:requests, SPIDER:dupefilter): run "
                    "it as a user that may read those too, such as the one scrapy-redis used.",
                    file=sys.stderr,
                )
        elif is_transient(exc):
            print(
                f"error: Redis failed ({type(exc).__name__}: {exc}); nothing "
                "this command did was lost: run it again once Redis is back (commands "
                "that write, like seed and requeue, skip what is already done).",
                file=sys.stderr,
            )
        elif unknown_command(exc):
            print(
                f"error: Redis does not know the command {unknown_command(exc)} (disabled or "
                "renamed with rename-command in its configuration?); the crawler needs "
                "it, and EVAL, EVALSHA and SCRIPT for its Lua scripts: enable them on "
                "the server.",
                file=sys.stderr,
            )
        else:
            raise
        command.exitcode = 1


def unknown_command(exc: BaseException) -> str:
    """The command Redis answered "unknown command" to, or ""."""
    match = re.match(r"unknown command [`'](\S+?)[`']", str(exc))
    return match.group(1) if isinstance(exc, redis.ResponseError) and match else ""


def crawl_known(crawl: Crawl) -> bool:
    """Whether this Redis holds anything of *crawl* (its counters, record,
    nodes, seeds or items): a wrong db number or crawl name holds nothing."""
    client = sync_client(crawl.url)
    try:
        keys = crawl.config.keys
        return bool(
            client.exists(keys.stats, keys.config, keys.nodeinfo, keys.start_urls)
            or any(client.exists(part.items) for part in crawl.config.partitions())
        )
    finally:
        client.close()


def check_seen(crawl: Crawl) -> None:
    """Record the crawl's seen-set settings, or stop if they differ from the
    crawl's record (``crawler.seenrecord``): for commands that write to it."""
    client = sync_client(crawl.url)
    try:
        check_seen_config(client, crawl.config.keys, crawl.config.seen)
    except CrawlerError as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        client.close()
