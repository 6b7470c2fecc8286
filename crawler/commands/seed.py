"""``scrapy seed SPIDER [URL ...] [-i FILE|-]``: queue start URLs for a crawl."""

from __future__ import annotations

import argparse
import asyncio
import bz2
import codecs
import contextlib
import gc
import gzip
import io
import itertools
import lzma
import math
import os
import signal
import stat
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import redis
from scrapy.exceptions import UsageError

from crawler.commandbase import CrawlCommand
from crawler.commands._common import (
    CommandFailed,
    CommandInterrupted,
    Crawl,
    check_seen,
    open_crawl,
    run_guarded,
)
from crawler.connection import async_client, redact
from crawler.exceptions import BadSeed
from crawler.frontier import Batch, CommitResult
from crawler.partfrontier import AnyFrontier, make_frontier
from crawler.politeness import make_entry, request_entry
from crawler.redis_errors import is_permission, is_transient
from crawler.seeds import UNDECODED_BYTES, parse_seed, simple_path_agrees, simple_seed
from crawler.seedstream import LineFeed, StoppableReader, is_stream
from crawler.worker import retry_for

_BATCH = 2000
# How often a seeder waiting for a stream's next line looks for Ctrl-C (seconds).
_STREAM_POLL = 0.25
_SHOWN_REJECTS = 1000
# Line ranges named in the message of lines a stream read and did not queue.
_SHOWN_RANGES = 10


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> [URL ...] [-i FILE]"

    def short_desc(self) -> str:
        return "Queue seed URLs (or JSON lines) into a distributed crawl"

    def long_desc(self) -> str:
        return (
            "Queue seeds for SPIDER's crawl. Each line (or argument) is a URL or a JSON "
            "object with url and optionally priority, meta, headers, method, body, "
            "callback. Invalid lines are reported with their line number and reason and "
            "the rest are queued; URLs already seen are counted, not queued. Exit status "
            "is 1 if any line was rejected."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-i", "--input", metavar="FILE", help="read seeds from FILE, or - for stdin"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args:
            raise UsageError("name the spider to seed")
        if len(args) == 1 and not opts.input:
            raise UsageError("give URLs as arguments or a file with -i FILE (- for stdin)")
        run_guarded(self, lambda: self._run(args[0], args[1:], opts.input))

    def _run(self, name: str, urls: list[str], path: str | None) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name, record=True)
        check_seen(crawl)
        seeder = Seeder(crawl, progress=sys.stderr.isatty())
        seeder.source = "standard input" if path == "-" else f"seed file {path!r}"
        # Ctrl-C stops the seeding at its next batch of lines, or at once on
        # a stream (a second one: at once, wherever it is). asyncio.run's own
        # handler cancels the main task, and that cancellation was lost now
        # and then: 4 of 12 Ctrl-C under load were ignored, the whole file
        # was seeded and the exit status was 0. Raising KeyboardInterrupt
        # wherever the signal lands left the event loop waiting for ever, once.

        # Opening a FIFO blocks until a process opens it for writing, in
        # open(2), which Python restarts after the handler unless it raises:
        # Ctrl-C there ends the wait at once (it was ignored, and only a
        # second one ended the command).
        waiting = path is not None and path != "-" and _is_fifo(path)

        def interrupt(signum: int, frame: Any) -> None:
            if seeder.interrupted or waiting:
                seeder.forced = True
                raise KeyboardInterrupt
            seeder.interrupted = True

        previous = signal.signal(signal.SIGINT, interrupt)
        streamed = False
        try:
            with contextlib.ExitStack() as stack:
                if waiting:
                    print(
                        f"waiting for a writer on the FIFO {path!r}: its lines are queued "
                        "as they come (Ctrl-C stops)",
                        file=sys.stderr,
                        flush=True,
                    )
                lines = _lines(urls, path, stack)
                waiting = False
                streamed = isinstance(lines, LineFeed)
                asyncio.run(seeder.run(lines))
        except KeyboardInterrupt:
            print(seeder.summary(), flush=True)
            if waiting:
                raise CommandInterrupted(
                    f"no process opened the FIFO {path!r} for writing; nothing was read"
                ) from None
            if streamed:
                raise CommandInterrupted(seeder.stream_interrupted()) from None
            raise CommandInterrupted(
                "seeding was interrupted; a batch in flight may have been queued too. Run "
                "the same command again to queue the rest: seeds queued already are "
                "counted as already seen, not queued twice."
            ) from None
        except CommandFailed:
            print(seeder.summary(), flush=True)
            raise
        except (redis.RedisError, OSError) as exc:
            # Redis gone while seeding a file or the arguments (a stream's
            # commits wait for it instead). run_guarded said "nothing this
            # command did was lost", without the summary.
            if not is_transient(exc) or is_permission(exc):
                raise
            print(seeder.summary(), flush=True)
            raise CommandFailed(seeder.redis_failed(exc)) from None
        finally:
            signal.signal(signal.SIGINT, previous)
        print(seeder.summary(), flush=True)
        if seeder.rejected:
            self.exitcode = 1


async def _in_flight(pending: list[asyncio.Task[None]], commit: Coroutine[Any, Any, None]) -> None:
    """Run *commit* in the background beside *pending*: a few commits in
    flight keep the pipe full without holding more than a few batches in
    memory (the oldest is awaited once there are four)."""
    pending.append(asyncio.create_task(commit))
    if len(pending) >= 4:
        await pending.pop(0)


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False  # open() says why


def _lines(
    urls: list[str], path: str | None, stack: contextlib.ExitStack
) -> Iterator[str] | LineFeed:
    """The arguments, then the lines of *path* (``-`` for stdin), closed by
    *stack*: an iterator for a file, a LineFeed for a stream that may stay
    open (a pipe, a terminal), whose lines are queued as they come."""
    if path is None:
        return iter(urls)
    if path == "-":
        raw: Any = sys.stdin.buffer if isinstance(sys.stdin, io.TextIOWrapper) else None
        if raw is None:  # stdin replaced by a text stream (tests, embedding)
            return itertools.chain(urls, sys.stdin)
        name = "standard input"
    else:
        try:
            raw = stack.enter_context(open(path, "rb"))
        except OSError as exc:
            raise CommandFailed(f"cannot read seed file {path!r}: {exc.strerror}") from None
        name = f"seed file {path!r}"
    if is_stream(raw.fileno()):
        return _stream(urls, raw.fileno(), name)
    return itertools.chain(urls, _read(raw, name, stack))


def _stream(urls: list[str], fd: int, name: str) -> LineFeed:
    """The lines of the stream *fd*, read by a thread that Ctrl-C can stop
    (through a reader of its own: a thread blocked in sys.stdin.buffer
    would hold its lock, and the interpreter's exit abort on it)."""

    def open_lines(stack: contextlib.ExitStack) -> Iterator[str]:
        raw = io.BufferedReader(StoppableReader(fd, feed.stop_reading))
        return itertools.chain(urls, _read(raw, name, stack))

    feed = LineFeed(open_lines)
    return feed


#: Compressed seed files are read as they are: (magic bytes, name, opener).
_COMPRESSED: tuple[tuple[bytes, str, Any], ...] = (
    (b"\x1f\x8b", "gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"\xfd7zXZ\x00", "xz", lambda raw: lzma.LZMAFile(raw)),
    (b"BZh", "bzip2", lambda raw: bz2.BZ2File(raw)),
)
#: Byte-order marks other than UTF-8's, longest first (UTF-32 LE's begins
#: with UTF-16 LE's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _read(raw: Any, name: str, stack: contextlib.ExitStack) -> Iterator[str]:
    """The lines of *raw* (:func:`_decoded`); a read that fails (EIO from a
    failing disk, a socket reset by its peer) is an error naming the input,
    raised after the lines read before it, which are queued: it was a
    traceback, and the commits in flight were cancelled."""
    try:
        # yield from, not a loop counting lines: this is every line's path.
        yield from _decoded(raw, name, stack)
    except OSError as exc:
        raise CommandFailed(
            f"cannot read {name}: {exc.strerror or exc}; the lines read before the error "
            "were seeded (the summary says how many lines were read and queued): check "
            "the input and seed it again (what is queued already is counted as already "
            "seen, not queued twice)"
        ) from None


def _decoded(raw: Any, name: str, stack: contextlib.ExitStack) -> Iterator[str]:
    """The lines of the binary stream *raw*: gzip, xz and bzip2 are
    decompressed; text is UTF-8 (a byte-order mark dropped), or UTF-16 or
    UTF-32 when a byte-order mark says so. Bytes that do not decode are kept
    as lone surrogates for parse_seed to reject their line ("replace" made
    them U+FFFD and queued another URL)."""
    stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    head = stream.peek(6)[:6]
    for magic, kind, opener in _COMPRESSED:
        if head.startswith(magic):
            inner = stack.enter_context(opener(stream))
            return _checked(_decoded(inner, name, stack), name, kind)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return stack.enter_context(
                io.TextIOWrapper(stream, encoding=encoding, errors=UNDECODED_BYTES)
            )
    return stack.enter_context(
        io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape")
    )


def _checked(lines: Iterator[str], name: str, kind: str) -> Iterator[str]:
    """*lines* of a compressed file; a damaged or cut file is an error naming
    it (the lines before the damage are queued)."""
    try:
        yield from lines
    except (OSError, EOFError, lzma.LZMAError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the file could not be read (EIO): not damage (_read)
        raise CommandFailed(
            f"{name} is not a whole {kind} file ({exc}); the lines before the damage "
            "were read: fix or recompress the file and seed it again (what is queued "
            "already is counted as already seen, not queued twice)"
        ) from None


class Seeder:
    """Validates seed lines and writes them to Redis in pipelined batches."""

    def __init__(self, crawl: Crawl, progress: bool) -> None:
        self.crawl = crawl
        self.progress = progress
        self.read = self.queued = self.seen = self.rejected = 0
        # Set by Ctrl-C: the seeding stops at the next batch of lines (at
        # once on a stream); by a second one: it stopped wherever it was.
        self.interrupted = self.forced = False
        #: What the lines are read from, as messages name it.
        self.source = "the arguments"
        self._last_progress = 0.0
        # A stream's lines cannot be read again, so its commits wait for a
        # Redis that went away (_commit_waiting). Batches sent and not (yet)
        # queued: (first line, last line, seeds); the batch being filled;
        # the last line of a batch sent; since when Redis is gone.
        self._unconfirmed: dict[int, tuple[int, int, int]] = {}
        self._filling = Batch()
        self._sent_upto = 0
        self._outage_since: float | None = None
        self._waited = False
        config = crawl.config
        self._max_url = config.seed_max_url_length
        self._simple = simple_path_agrees(crawl.spider, crawl.crawler.request_fingerprinter)

    async def run(self, lines: Iterator[str] | LineFeed) -> None:
        client = async_client(self.crawl.url)
        frontier = make_frontier(client, self.crawl.config, f"seed-{os.getpid()}")
        await frontier.register()  # listed by `scrapy crawls` from now on
        pending: list[asyncio.Task[None]] = []
        # Seeding makes no reference cycles worth collecting, and the cyclic
        # collector, walking the batches in memory, costs a quarter of the run.
        # A stream may be seeded for days: there the collector stays on.
        gc_was_enabled = gc.isenabled()
        if not isinstance(lines, LineFeed):
            gc.disable()
        try:
            if isinstance(lines, LineFeed):
                await self._stream(lines, frontier, pending)
            else:
                await self._batches(lines, frontier, pending)
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C: the commits already sent are let finish (briefly), so
            # the summary counts what they queued.
            if pending:
                await asyncio.wait(pending, timeout=5)
            raise
        finally:
            if isinstance(lines, LineFeed):
                lines.stop()
            # A commit that failed (Redis gone) ends the command: the others
            # in flight are cancelled and awaited before the client closes,
            # not left to print "Task exception was never retrieved".
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if gc_was_enabled:
                gc.enable()
            await client.aclose()
            if self.progress:
                sys.stderr.write("\n")

    async def _batches(
        self, lines: Iterator[str], frontier: AnyFrontier, pending: list[asyncio.Task[None]]
    ) -> None:
        """Seed the lines of a file (or the arguments) in batches of _BATCH."""
        batch = Batch()
        # Most lines are plain URLs that take the fast path, inlined here.
        simple = simple_seed if self._simple else None
        max_url = self._max_url
        lineno = 0
        damaged: CommandFailed | None = None
        try:
            for lineno, line in enumerate(lines, 1):
                hit = simple(line.strip(), max_url) if simple else None
                if hit is None:
                    self._add(lineno, line, batch)
                else:
                    batch.pushes.append((hit[0], 0, make_entry(hit[1], hit[2])))
                if len(batch.pushes) >= _BATCH:
                    if self.interrupted:
                        raise KeyboardInterrupt
                    self.read = lineno
                    batch = await self._send(frontier, batch, pending)
                    self._show_progress()
        except CommandFailed as exc:
            # A damaged compressed file: what was read before is queued.
            damaged = exc
        self.read = lineno
        pending.append(asyncio.create_task(self._commit(frontier, batch)))
        for task in pending:
            await task
        if damaged is not None:
            raise damaged

    async def _stream(
        self, feed: LineFeed, frontier: AnyFrontier, pending: list[asyncio.Task[None]]
    ) -> None:
        """Seed the lines of a stream as they come: whatever was read is
        queued as soon as the stream has nothing more for the moment (a
        producer writing a line a minute), in batches of _BATCH while lines
        come faster than they are queued. Ctrl-C stops the reading at once,
        and what was read is queued. Redis gone meanwhile: the lines read
        are held until it is back (_commit_waiting)."""
        feed.start()
        while True:
            if self.interrupted:
                feed.stop()
            lines = feed.take()
            for line in lines:
                self.read += 1
                self._add_line(self.read, line, self._filling)
                if len(self._filling.pushes) >= _BATCH:
                    await self._send_stream(frontier, pending)
            if lines:
                self._show_progress()
                await asyncio.sleep(0)  # the commits in flight go on
                continue
            if self._filling.pushes:  # nothing more for now: queue what was read
                await self._send_stream(frontier, pending)
            for task in [t for t in pending if t.done()]:
                pending.remove(task)
                task.result()  # a permanent error ends the command
            if self.interrupted:
                raise KeyboardInterrupt
            if feed.done:
                break
            await feed.wait(_STREAM_POLL)
        for task in pending:
            await task
        if self._unconfirmed:  # Ctrl-C while waiting for Redis at the end
            raise KeyboardInterrupt
        if feed.error is not None:
            raise feed.error

    async def _send_stream(self, frontier: AnyFrontier, pending: list[asyncio.Task[None]]) -> None:
        """Commit the stream's batch being filled, which holds its lines
        after the last batch sent up to the last line read."""
        batch, self._filling = self._filling, Batch()
        first, self._sent_upto = self._sent_upto + 1, self.read
        if not batch.pushes:
            return
        self._unconfirmed[first] = (first, self.read, len(batch.pushes))
        await _in_flight(pending, self._commit_stream(frontier, batch, first))

    async def _commit_stream(self, frontier: AnyFrontier, batch: Batch, first: int) -> None:
        result = await self._commit_waiting(frontier, batch)
        if result is not None:  # else Ctrl-C came first: not queued
            del self._unconfirmed[first]
            self.queued += result.queued
            self.seen += result.duplicates

    async def _commit_waiting(self, frontier: AnyFrontier, batch: Batch) -> CommitResult | None:
        """Commit a batch of a stream, whose lines cannot be read again: a
        transient Redis error (connection refused or reset, a timeout, a
        server loading its data) is retried with backoff until Redis is
        back, said once; None if Ctrl-C came first. It ended the command
        before, the lines read and not queued lost."""
        results: list[CommitResult] = []

        async def commit() -> None:
            results.append(await frontier.commit(batch))

        done = await retry_for(
            math.inf,
            commit,
            retry=lambda exc: is_transient(exc) and not is_permission(exc),
            waiting=lambda exc, _: self._outage_began(exc),
            stopped=lambda: self.interrupted,
        )
        if not done:
            return None
        self._outage_over()
        return results[0]

    def _outage_began(self, exc: Exception) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        self._waited = True
        if self.progress:
            sys.stderr.write("\n")
        print(
            f"Redis at {redact(self.crawl.url)} is unreachable ({type(exc).__name__}: {exc}); "
            f"the lines read from {self.source} cannot be read again, so they are held and "
            "queued once it is back: retrying with backoff (Ctrl-C stops, saying which "
            "lines were not queued)",
            file=sys.stderr,
            flush=True,
        )

    def _outage_over(self) -> None:
        if self._outage_since is None:
            return
        print(
            f"Redis at {redact(self.crawl.url)} is reachable again after "
            f"{time.monotonic() - self._outage_since:.0f}s; queueing the lines held",
            file=sys.stderr,
            flush=True,
        )
        self._outage_since = None

    async def _send(
        self, frontier: AnyFrontier, batch: Batch, pending: list[asyncio.Task[None]]
    ) -> Batch:
        """Commit *batch* in the background; a new, empty batch."""
        await _in_flight(pending, self._commit(frontier, batch))
        return Batch()

    def _add_line(self, lineno: int, line: str, batch: Batch) -> None:
        hit = simple_seed(line.strip(), self._max_url) if self._simple else None
        if hit is None:
            self._add(lineno, line, batch)
        else:
            batch.pushes.append((hit[0], 0, make_entry(hit[1], hit[2])))

    def _add(self, lineno: int, line: str, batch: Batch) -> None:
        """Queue one line by the full path (Scrapy's Request and fingerprint)."""
        crawl = self.crawl
        try:
            request = parse_seed(line, crawl.spider, crawl.config)
            if request is None:
                return
            entry = request_entry(request, crawl.spider)
        except (BadSeed, ValueError, TypeError) as exc:
            self.rejected += 1
            if self.rejected <= _SHOWN_REJECTS:
                print(f"line {lineno}: rejected: {exc}", file=sys.stderr)
            elif self.rejected == _SHOWN_REJECTS + 1:
                print("(more rejected lines not shown; see the count below)", file=sys.stderr)
            return
        fp = crawl.crawler.request_fingerprinter.fingerprint(request)
        batch.pushes.append((fp, request.priority, entry))

    async def _commit(self, frontier: AnyFrontier, batch: Batch) -> None:
        if not batch.pushes:
            return
        result = await frontier.commit(batch)
        self.queued += result.queued
        self.seen += result.duplicates

    def _show_progress(self) -> None:
        now = time.monotonic()
        if self.progress and now - self._last_progress > 0.5:
            self._last_progress = now
            sys.stderr.write(
                f"\rread {self.read:,} lines: {self.queued:,} queued, "
                f"{self.seen:,} already seen, {self.rejected:,} rejected"
            )

    def stream_interrupted(self) -> str:
        """What Ctrl-C on a stream says: the seeds read and not queued, by
        line number, which the stream cannot give again."""
        ranges = sorted(self._unconfirmed.values())
        if self._filling.pushes:  # a second Ctrl-C: stopped before it was sent
            ranges.append((self._sent_upto + 1, self.read, len(self._filling.pushes)))
        if not ranges:
            return (
                "seeding was interrupted; the summary above says what was queued of the lines read."
            )
        seeds = sum(n for _, _, n in ranges)
        merged: list[list[int]] = []
        for first, last, _ in ranges:
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        spans = [str(a) if a == b else f"{a}-{b}" for a, b in merged[:_SHOWN_RANGES]]
        where = ", ".join(spans) + (", ..." if len(merged) > _SHOWN_RANGES else "")
        lines = "line" if spans == [str(merged[0][0])] else "lines"
        why = (
            f"while waiting for Redis at {redact(self.crawl.url)}"
            if self._waited
            else "before Redis confirmed what was sent"
        )
        said = (
            f"1 seed read from {self.source} was"
            if seeds == 1
            else f"{seeds} seeds read from {self.source} were"
        )
        return (
            f"seeding was interrupted {why}: {said} NOT queued (in {lines} {where}), and a "
            "stream cannot give them again: seed those lines again (any of them queued "
            "already is counted as already seen, not queued twice). The summary above says "
            "what was queued of the lines read."
        )

    def redis_failed(self, exc: BaseException) -> str:
        """What a transient Redis error that ended the seeding of a file (or
        the arguments) says: they can be seeded again, nothing twice."""
        return (
            f"Redis at {redact(self.crawl.url)} failed ({type(exc).__name__}: {exc}) after "
            f"{self.read} lines were read; the summary above says what was queued. Run the "
            "same command again once Redis is back: seeds queued already are counted as "
            "already seen, not queued twice."
        )

    def summary(self) -> str:
        return (
            f"seeded crawl {self.crawl.config.name!r} on {redact(self.crawl.url)}: "
            f"{self.queued} queued, {self.seen} already seen, {self.rejected} rejected "
            f"({self.read} lines read)"
        )
