"""``scrapy export SPIDER -o FILE``: the whole cluster's items as one feed."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, cast

import redis
from scrapy.exceptions import UsageError
from scrapy.exporters import (
    BaseItemExporter,
    CsvItemExporter,
    JsonItemExporter,
    JsonLinesItemExporter,
)
from scrapy.extensions.feedexport import apply_uri_params
from scrapy.settings import BaseSettings
from scrapy.utils.conf import feed_process_params_from_cli
from scrapy.utils.misc import load_object

from crawler.commandbase import CrawlCommand
from crawler.commands._common import (
    CommandFailed,
    CommandInterrupted,
    crawl_known,
    open_crawl,
    run_guarded,
)
from crawler.connection import redact, sync_client
from crawler.exceptions import CrawlerError
from crawler.follow import Follower
from crawler.follow import trimmed as is_trimmed
from crawler.jobs import crawl_state
from crawler.status import snapshot
from crawler.topology import with_partitions

_SCAN_COUNT = 2000

#: The path :func:`feed_target` gives for standard output (Scrapy's URI).
STDOUT = "stdout:"


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "<spider> -o FILE"

    def short_desc(self) -> str:
        return "Write every item of a distributed crawl to one feed file"

    def long_desc(self) -> str:
        return (
            "Write the items all nodes stored in Redis to FILE, each once, through "
            "Scrapy's own exporters. The format comes from the extension as with "
            "'scrapy crawl -o' (.jsonl, .json, .csv, .xml, and any FEED_EXPORTERS "
            "format), from a colon at the end (-o FILE:FORMAT), or from -t. "
            "-o -:FORMAT (or -o - -t FORMAT) writes the feed to standard output. "
            "The file is replaced only when the export succeeds (-O is the same). "
            "With --follow, items are written as the nodes store them (JSON lines), "
            "each once across restarts of the follower (its cursor is kept in Redis), "
            "until the crawl is finished; FEED_EXPORT_BATCH_ITEM_COUNT with "
            "%(batch_id)d in FILE rotates the file, and CRAWLER_EXPORT_TRIM empties "
            "exported items in Redis."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="feed file to write (- for stdout); FILE:FORMAT sets the format, as "
            "with 'scrapy crawl -o'",
        )
        parser.add_argument(
            "-O",
            "--overwrite-output",
            metavar="FILE",
            help="the same as -o, which replaces FILE too (Scrapy's -o appends)",
        )
        parser.add_argument(
            "-t", "--format", "--output-format", metavar="FORMAT", help="override the format"
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="write items as they are stored, until the crawl is finished",
        )
        parser.add_argument(
            "--cursor",
            metavar="NAME",
            help="name of the follower's cursor in Redis (default: the output path)",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider whose items to export")
        if opts.output and opts.overwrite_output:
            # Scrapy's words for crawl -o and -O.
            raise UsageError("Please use only one of -o/--output and -O/--overwrite-output")
        output = opts.output or opts.overwrite_output
        if not output:
            raise UsageError("give the output file with -o FILE")
        if opts.cursor and not opts.follow:
            raise UsageError("--cursor goes with --follow")
        if opts.follow and opts.overwrite_output:
            raise UsageError(
                "--follow goes with -o: it appends to FILE, going on where it stopped "
                "when run again"
            )
        if opts.follow:
            follow = lambda: self._follow(args[0], output, opts.format, opts.cursor)  # noqa: E731
            run_guarded(self, follow, role="follower")
            return
        run_guarded(self, lambda: self._run(args[0], output, opts.format))

    def _follow(self, name: str, output: str, fmt: str | None, cursor: str | None) -> None:
        assert self.settings is not None
        # The output is checked before anything is written to the crawl
        # (below, its partitions): a refused follower leaves no trace there.
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        settings = crawl.crawler.settings
        output, fmt = feed_target(settings, output, fmt)
        if output in (STDOUT, "-"):
            raise CommandFailed(
                "--follow writes to a file, not to stdout: a follower restarted after a "
                "crash cuts the file back to its cursor in Redis, so that each item is "
                "written once, and a pipe cannot be cut back; name a .jsonl file"
            )
        try:
            output % {"batch_id": 1}
        except (KeyError, ValueError, TypeError) as exc:
            raise CommandFailed(
                f"{output!r}: --follow fills in only %(batch_id)d in the output name "
                f"({type(exc).__name__}: {exc}); write a literal % as %%"
            ) from None
        if fmt not in ("jsonl", "jsonlines"):
            raise CommandFailed(
                f"--follow writes JSON lines, one item per line, so that a follower "
                f"restarted after a crash can go on where it stopped; {output!r} asks "
                f"for {fmt!r}: name a .jsonl file (or -t jsonlines)"
            )
        batch = _batch_size(settings, output, ("%(batch_id)d",))
        _check_writable(output % {"batch_id": 1} if "%(batch_id)" in output else output)
        # It writes (its cursor): like seed, it records a new crawl's
        # partitions, so it reads every partition the nodes will write.
        try:
            crawl.config = with_partitions(crawl.config, crawl.url, record=True)
        except CrawlerError as exc:
            raise CommandFailed(str(exc)) from None
        client = sync_client(crawl.url)
        keys = crawl.config.keys

        def make_exporter(handle: Any) -> JsonLinesItemExporter:
            exporter = JsonLinesItemExporter(
                handle,
                encoding=settings.get("FEED_EXPORT_ENCODING"),
                fields_to_export=settings.getlist("FEED_EXPORT_FIELDS") or None,
            )
            cast(Any, exporter).encoder = _SurrogateEscaping(exporter.encoder)
            export_item = exporter.export_item

            def checked(item: Any) -> None:
                try:
                    export_item(item)
                except UnicodeEncodeError as exc:
                    raise CommandFailed(_unencodable(item, exc, exc.encoding)) from None

            cast(Any, exporter).export_item = checked
            return exporter

        def state() -> str:
            return crawl_state(snapshot(client, keys))

        follower = Follower(
            client,
            keys,
            crawl.config.partitions(),
            output,
            cursor or str(Path(output).resolve()),
            batch,
            settings.getbool("CRAWLER_EXPORT_TRIM"),
            make_exporter,
            state,
        )
        print(
            f"following crawl {crawl.config.name!r} on {redact(crawl.url)} into {output}",
            file=sys.stderr,
        )
        follower.trim_keep = max(0.0, settings.getfloat("CRAWLER_EXPORT_TRIM_KEEP"))
        try:
            count = follower.run()
        except (RuntimeError, ValueError) as exc:
            raise CommandFailed(str(exc)) from None
        except OSError as exc:
            # Disk full, a directory in the way, no permission: the cursor
            # in Redis counts only what was written and fsynced.
            raise CommandFailed(
                f"cannot write {exc.filename or output!r}: {exc.strerror or exc}; the "
                f"cursor in Redis counts only what was written: fix it and run the same "
                f"command again to go on"
            ) from None
        finally:
            client.close()
        if follower.stop:
            ended = "stopped"
        elif follower.ended == "closed":
            ended = "the crawl was closed by a spider's CloseSpider (`scrapy status` says why)"
        else:
            ended = "the crawl is finished"
        print(f"wrote {count} items to {output}; {ended}", file=sys.stderr)

    def _run(self, name: str, output: str, fmt: str | None) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, spider_args=self.spider_args, name=name)
        _check_known(crawl, output)
        settings = crawl.crawler.settings
        exporters = settings.getwithbase("FEED_EXPORTERS")
        given = output
        output, fmt = feed_target(settings, output, fmt)
        if fmt not in exporters:
            raise CommandFailed(
                f"unknown feed format {fmt!r} for {given!r}; use one of "
                f"{', '.join(sorted(exporters))} (by file extension, -o FILE:FORMAT or -t FORMAT)"
            )
        exporter_cls = load_object(exporters[fmt])
        batch = _batch_size(settings, output, ("%(batch_id)d", "%(batch_time)s"))
        fields = settings.getlist("FEED_EXPORT_FIELDS") or None
        if fields is None and issubclass(exporter_cls, CsvItemExporter):
            # Scrapy's CSV header is the first item's fields: the declared
            # fields of an Item, but items come back from Redis as dicts, so
            # the first one's keys would drop every other field (with only
            # a warning). Every field of the crawl's items, in the order met.
            client = sync_client(crawl.url)
            try:
                fields = _all_fields(
                    item
                    for keys in crawl.config.partitions()
                    for item in _stored_items(client, keys.items, [0])
                )
            finally:
                client.close()
        written: list[str] = []
        try:
            count, trimmed = self._write_batches(
                crawl, exporter_cls, fields, output, batch, written
            )
        except BrokenPipeError:
            raise  # piped into `head`: run_guarded stops quietly, as elsewhere
        except KeyboardInterrupt:
            # With batches, the files finished before stay as written.
            before = f" ({len(written)} batch files before it were written)" if written else ""
            raise CommandInterrupted(
                f"{_shown(output)} was left as it was{before} (a device or pipe has what was "
                "written); items in Redis are unchanged"
            ) from None
        except OSError as exc:
            raise CommandFailed(
                f"cannot write {output!r}: {exc.strerror or exc}; items in Redis are "
                "unchanged, and an existing file is left as it was"
            ) from None
        where = written[0] if len(written) == 1 else f"{written[0]} … {written[-1]}"
        files = f", {len(written)} files of at most {batch}" if len(written) > 1 else ""
        print(
            f"exported {count} items of crawl {crawl.config.name!r} from "
            f"{redact(crawl.url)} to {where} ({fmt}{files})",
            file=sys.stderr,
        )
        if trimmed[0]:
            print(
                f"note: {trimmed[0]} items were trimmed from Redis after a follower "
                "(export --follow with CRAWLER_EXPORT_TRIM) wrote them; they are in its "
                "files, not in this one",
                file=sys.stderr,
            )

    def _write_batches(
        self,
        crawl: Any,
        exporter_cls: Any,
        fields: list[str] | None,
        output: str,
        batch: int,
        written: list[str],
    ) -> tuple[int, list[int]]:
        """Write the feed to *output* with Scrapy's feed URI parameters
        filled in (``%(name)s``, ``%(time)s``, the spider's attributes,
        ``%(batch_id)d``, ``%(batch_time)s``), one file per *batch* items if
        *batch* (FEED_EXPORT_BATCH_ITEM_COUNT), as ``scrapy crawl -o`` names
        and rotates its files: they were written to a file named with the
        placeholders themselves (helper 49). The paths written go to
        *written*; returns (items written, [items trimmed])."""
        settings = crawl.crawler.settings
        client = sync_client(crawl.url)
        trimmed = [0]
        stored = (
            item
            for keys in crawl.config.partitions()
            for item in _stored_items(client, keys.items, trimmed)
        )
        count = 0
        try:
            for batch_id, items in enumerate(_batches(stored, batch), start=1):
                if output == STDOUT:
                    # Only the feed goes there: every message goes to stderr.
                    count += self._fill(crawl, exporter_cls, fields, sys.stdout.buffer, items)
                    sys.stdout.buffer.flush()
                    written.append("stdout")
                    continue
                params = _uri_params(crawl.spider, batch_id, settings.get("FEED_URI_PARAMS"))
                path = apply_uri_params(output, params)
                count += self._write(crawl, exporter_cls, fields, path, items)
                written.append(path)
        finally:
            client.close()
        return count, trimmed

    def _write(
        self,
        crawl: Any,
        exporter_cls: Any,
        fields: list[str] | None,
        output: str,
        items: Iterable[Any],
    ) -> int:
        """Write *items* as a feed to *output*; the number written."""
        try:
            mode = os.stat(output).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            # A device or pipe (/dev/null, /dev/stdout): written as it is,
            # as Scrapy's -o does; replacing it would put a file in its place.
            with open(output, "wb") as handle:
                return self._fill(crawl, exporter_cls, fields, handle, items)
        target = Path(output).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)  # as Scrapy's -o
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            # mkstemp's 0600, not the replaced file's mode (or the umask's).
            if mode is None:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            else:
                os.chmod(tmp, stat.S_IMODE(mode))
            with os.fdopen(fd, "wb") as handle:
                result = self._fill(crawl, exporter_cls, fields, handle, items)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        return result

    def _fill(
        self,
        crawl: Any,
        exporter_cls: Any,
        fields: list[str] | None,
        handle: Any,
        items: Iterable[Any],
    ) -> int:
        settings = crawl.crawler.settings
        exporter = exporter_cls(
            handle,
            encoding=settings.get("FEED_EXPORT_ENCODING"),
            fields_to_export=fields,
            indent=settings.getint("FEED_EXPORT_INDENT"),
        )
        exporter.start_exporting()
        count = _export(exporter, iter(items))
        exporter.finish_exporting()
        return count


def feed_target(settings: BaseSettings, output: str, fmt: str | None) -> tuple[str, str]:
    """Where and in what format ``-o OUTPUT`` writes: (path, format), the
    path :data:`STDOUT` for standard output. *output* is parsed by Scrapy's
    own ``-o`` parser (``feed_process_params_from_cli``): ``FILE:FORMAT``
    (``items.dat:jsonlines``) where FORMAT is one of FEED_EXPORTERS, else the
    format by extension; ``-:FORMAT`` is stdout. It took ``-`` and
    ``items.dat:jsonlines`` for file names. *fmt* (``-t``) overrides the
    format, and with it ``-`` alone is stdout too. Output Scrapy refuses
    (no known format) comes back whole, its extension as the format, for
    the caller's message."""
    exporters = dict(settings.getwithbase("FEED_EXPORTERS"))
    try:
        # Only the formats: the project's FEEDS (the nodes' own feeds),
        # which Scrapy merges in, are no part of this export.
        feeds = feed_process_params_from_cli(BaseSettings({"FEED_EXPORTERS": exporters}), [output])
    except UsageError:
        path, parsed = output, Path(output).suffix.lstrip(".").lower()
    else:
        [(path, options)] = feeds.items()
        parsed = options["format"]
    if fmt and path == "-":
        path = STDOUT
    return path, fmt or parsed


def _check_writable(path: str) -> None:
    """Stop before anything is written if *path* (the first file of a
    follower) cannot be written: a directory in its place, or a directory
    that cannot be made or written in. Its directory is made, as Scrapy's
    -o and the follower do."""
    target = Path(path)
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        # mkdir's EEXIST: a file where a directory of the path should be.
        why = "a file, not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise CommandFailed(
            f"cannot write {exc.filename or path!r}: {why or exc}; nothing was "
            f"written to the crawl: give -o a .jsonl file that can be written ({path!r})"
        ) from None


def _shown(path: str) -> str:
    return "stdout" if path == STDOUT else path


def _batch_size(settings: Any, output: str, names: tuple[str, ...]) -> int:
    """FEED_EXPORT_BATCH_ITEM_COUNT, refused unless *output* has one of the
    placeholders *names* that tell one batch's file from the next."""
    batch = settings.getint("FEED_EXPORT_BATCH_ITEM_COUNT")
    if batch and not any(name[:-1] in output for name in names):
        alternatives = "".join(f" (or {name})" for name in names[1:])
        raise CommandFailed(
            f"FEED_EXPORT_BATCH_ITEM_COUNT={batch} writes one file per batch: put "
            f"{names[0]}{alternatives} in the output name, e.g. "
            f"items-%(batch_id)d.jsonl ({output!r})"
        )
    return batch


def _batches(items: Iterator[Any], size: int) -> Iterator[Iterator[Any]]:
    """*items* in runs of *size* (all in one if 0), at least one run (an
    empty feed is written, as Scrapy's FEED_STORE_EMPTY does)."""
    if not size:
        yield items
        return
    first = True
    while True:
        run = list(islice(items, size))
        if run or first:
            yield iter(run)
        if len(run) < size:
            return
        first = False


def _uri_params(spider: Any, batch_id: int, function: str | None) -> dict[str, Any]:
    """Scrapy's feed URI parameters (FeedExporter._get_uri_params): the
    spider's attributes, ``time``, ``batch_time``, ``batch_id``, through
    FEED_URI_PARAMS if set."""
    params = {k: getattr(spider, k, None) for k in dir(spider)}
    now = datetime.now(tz=UTC)
    params["time"] = now.replace(microsecond=0).isoformat().replace(":", "-")
    params["batch_time"] = now.isoformat().replace(":", "-")
    params["batch_id"] = batch_id
    if function:
        changed = load_object(function)(params, spider)
        params = changed if changed is not None else params
    return params


def _check_known(crawl: Any, output: str) -> None:
    """Stop before *output* is touched if this Redis holds nothing of the
    crawl: a wrong db number or crawl name exported "0 items" over the file."""
    if not crawl_known(crawl):
        raise CommandFailed(
            f"no crawl {crawl.config.name!r} in {redact(crawl.url)} (`scrapy crawls` lists "
            f"the crawls there): check REDIS_URL, its db number, and CRAWLER_CRAWL_NAME; "
            f"{output} was not touched"
        )


def _all_fields(items: Iterator[Any]) -> list[str] | None:
    """Every key of these items (dicts), in the order met; None if none."""
    fields: dict[str, None] = {}
    for item in items:
        if isinstance(item, dict):
            fields.update(dict.fromkeys(item))
    return list(fields) or None


def _stored_items(client: redis.Redis, key: str, trimmed: list[int]) -> Iterator[Any]:
    """The items in the item hash, decoded a page of HSCAN at a time;
    *trimmed* counts those a follower emptied."""
    cursor = 0
    while True:
        cursor, page = cast(
            tuple[int, dict[bytes, bytes]], client.hscan(key, cursor, count=_SCAN_COUNT)
        )
        values = [v for v in page.values() if not is_trimmed(v)]
        trimmed[0] += len(page) - len(values)
        yield from _decode_page(values)
        if cursor == 0:
            return


def _decode_page(stored: list[bytes]) -> list[Any]:
    # One json.loads of the page as an array: the per-call overhead of
    # json.loads is most of the decoding time of a small item.
    try:
        items = json.loads(b"[" + b",".join(stored) + b"]")
    except ValueError:
        items = None
    if isinstance(items, list) and len(items) == len(stored):
        return items
    # A bad value (empty, or two values in one): decode one by one, which
    # raises for it as before.
    return [json.loads(data) for data in stored]


def _export(exporter: BaseItemExporter, items: Iterator[Any]) -> int:
    """Export each item (decoded from its stored JSON); the number exported."""
    count = 0
    if isinstance(exporter, JsonItemExporter | JsonLinesItemExporter):
        cast(Any, exporter).encoder = _SurrogateEscaping(exporter.encoder)
    if type(exporter) is JsonLinesItemExporter and exporter.fields_to_export is None:
        # What export_item writes for an item decoded from JSON (a dict, so
        # no field serializers, every key in order), without its per-field
        # Python loop.
        encode, encoding = exporter.encoder.encode, exporter.encoding or "utf-8"
        write = exporter.file.write
        for item in items:
            try:
                write((encode(item) + "\n").encode(encoding))
            except UnicodeEncodeError as exc:
                raise CommandFailed(_unencodable(item, exc, encoding)) from None
            count += 1
        return count
    replaced: list[Any] = []
    for item in items:
        _export_one(exporter, item, replaced)
        count += 1
    if replaced:
        print(
            f"note: {len(replaced)} items held lone surrogates (halves of a UTF-16 pair, "
            "as cut emoji are) that this format cannot hold; they were written as "
            f"U+FFFD. The first: {_describe(replaced[0])}",
            file=sys.stderr,
        )
    return count


# Lone surrogates: Python strings can hold them (json.loads of "\\ud83d"),
# UTF-8 and the other encodings cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


class _SurrogateEscaping:
    """A JSON exporter's encoder that writes a lone surrogate as its JSON
    escape, as Scrapy's exporters do with FEED_EXPORT_ENCODING unset, where
    with an encoding set they would raise: JSON readers get the same string."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def encode(self, o: Any) -> str:
        text: str = self.encoder.encode(o)
        if text.isascii() or not _SURROGATE.search(text):
            return text
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _export_one(exporter: BaseItemExporter, item: Any, replaced: list[Any]) -> None:
    """Export *item*; where the format cannot hold a lone surrogate (Scrapy's
    CSV exporter raises), write it as U+FFFD and note the item."""
    try:
        exporter.export_item(item)
        return
    except UnicodeEncodeError as exc:
        if not _SURROGATE.match(exc.object[exc.start : exc.start + 1]):
            raise CommandFailed(_unencodable(item, exc, exc.encoding)) from None
    replaced.append(item)
    try:
        exporter.export_item(_replace_surrogates(item))
    except UnicodeEncodeError as exc:
        raise CommandFailed(_unencodable(item, exc, exc.encoding)) from None


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _describe(item: Any) -> str:
    if isinstance(item, dict) and item.get("url"):
        return f"the item with url {item['url']!r}"
    return f"the item {json.dumps(item, ensure_ascii=True)[:120]}"


def _unencodable(item: Any, exc: UnicodeEncodeError, encoding: str) -> str:
    char = exc.object[exc.start : exc.end]
    return (
        f"{_describe(item)} holds {char!r}, which FEED_EXPORT_ENCODING={encoding!r} "
        "cannot encode; export with -s FEED_EXPORT_ENCODING=utf-8"
    )
