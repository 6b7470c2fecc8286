"""``scrapy export SPIDER -o FILE --follow``: items streamed out of Redis as
they are stored, each written once, across restarts of the follower.

Each commit that stores a new item also appends its id to its partition's
item log, ``{P}:itemlog`` (a Redis stream, ``crawler/lua/commit.lua``). The
follower reads the logs on from a cursor, fetches the items, writes them
with Scrapy's JSON lines exporter, flushes and fsyncs the file, and only then
stores its cursor in ``{NAME}:export`` (one field per cursor, named by
``--cursor``, by default the output path): the log positions, the batch
file and its length. A follower restarted after a crash cuts the file back
to the stored length and reads on from the stored positions, so what it
wrote after its last cursor is written again, once.

``FEED_EXPORT_BATCH_ITEM_COUNT`` with ``%(batch_id)d`` in FILE rotates the
output as Scrapy's feed batching does (batch ids from 1).

``CRAWLER_EXPORT_TRIM``: once the cursor is stored, the exported items'
values are emptied in Redis (the id stays, so an item stored again after a
node's crash is still known and not exported twice) and the log is trimmed
up to the cursor. The ids are dropped ``CRAWLER_EXPORT_TRIM_KEEP`` seconds
later (``{N}:trimmed`` lists them, oldest first), so a crawl that never
ends holds only that window's ids: its memory for items stays flat.

The follower exits once the crawl is finished (it had nodes, none is left
running, nothing is queued or in flight) and everything stored is written;
a crawl kept alive (``CRAWLER_KEEP_ALIVE``) is followed until Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from itertools import takewhile
from pathlib import Path
from typing import Any

import redis

from crawler.keys import Keys
from crawler.partitions import partition_keys, recorded_tags
from crawler.redis_errors import is_permission, is_transient

#: Log entries read per partition per round.
_READ = 1000
# Trimmed ids dropped per call.
_DROP = 1000
#: How long to wait when nothing new was stored.
_IDLE = 0.5
#: How often a follower with nothing to do checks whether the crawl finished.
_FINISHED_EVERY = 2.0
#: How often a waiting follower says what it waits for.
_SAY_EVERY = 30.0


class Cursor:
    """Where a follower is: a position in each partition's item log, the
    current batch file (its id and how many items and bytes it holds)."""

    def __init__(self, raw: bytes | None, parts: int) -> None:
        state = json.loads(raw) if raw else {}
        self.positions: list[str] = list(state.get("positions") or ["0-0"] * parts)
        if len(self.positions) == 1 < parts:
            self.split(parts)  # stored before the crawl was split
        if len(self.positions) != parts:
            raise ValueError(
                f"the stored cursor has {len(self.positions)} partitions, the crawl {parts}"
            )
        self.batch = int(state.get("batch", 1))
        self.in_batch = int(state.get("in_batch", 0))
        self.length = int(state.get("length", 0))

    def split(self, parts: int) -> None:
        """The crawl was split into *parts* partitions after this cursor
        began (its first process had CRAWLER_PARTITIONS set, this one not):
        the new partitions' logs are read from their start."""
        self.positions += ["0-0"] * (parts - len(self.positions))

    def dumps(self) -> str:
        return json.dumps(
            {
                "positions": self.positions,
                "batch": self.batch,
                "in_batch": self.in_batch,
                "length": self.length,
                "time": time.time(),
            }
        )


class Follower:
    """Streams a crawl's items into FILE (``%(batch_id)d`` for batches)."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        parts: list[Keys],
        output: str,
        cursor_name: str,
        batch_items: int,
        trim: bool,
        make_exporter: Callable[[Any], Any],
        state: Callable[[], str],
    ) -> None:
        self.client = client
        self.keys = keys
        self.parts = parts
        self.output = output
        self.cursor_name = cursor_name
        self.batch_items = batch_items
        self.trim = trim
        self.make_exporter = make_exporter
        self.state = state  # the crawl's (crawler.jobs.crawl_state)
        self.ended = ""  # the crawl's state when following ended by itself
        self.written = 0
        self._stored_written = 0  # written when the cursor was last stored
        self._had_cursor = False  # Redis holds (or held) this follower's cursor
        self.stop = False
        self._handle: Any = None
        self._exporter: Any = None
        self._path: Path | None = None
        self._split_checked = 0.0
        #: Seconds a trimmed item's id is kept (0: for ever).
        self.trim_keep = 0.0
        self._dropped_at = 0.0

    def path(self, batch: int) -> Path:
        if "%(batch_id)" in self.output:
            return Path(self.output % {"batch_id": batch})
        return Path(self.output)

    def run(self) -> int:
        """Follow until the crawl is finished (or SIGINT/SIGTERM); the number
        of items written by this run."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        raw = self.client.hget(self.keys.export, self.cursor_name)
        self._had_cursor = raw is not None
        cursor = Cursor(raw, len(self.parts))
        if raw is None:
            self._refuse_existing()
        elif self.trim:
            self._trim_upto(cursor)  # a follower stopped before trimming
        self._open(cursor)
        if raw is None:
            # The file is this cursor's from now on: a follower stopped before
            # its first round stored one (disk full) goes on in it when run
            # again, where it was refused as "exists and Redis holds no cursor".
            self.client.hset(self.keys.export, self.cursor_name, cursor.dumps())
            self._had_cursor = True
        last_check, last_said, done = 0.0, time.monotonic(), False
        try:
            while not self.stop:
                try:
                    got = self._round(cursor)
                    state = ""
                    if not got and time.monotonic() - last_check >= _FINISHED_EVERY:
                        state = self.state()
                except redis.RedisError as exc:
                    # Redis's errors only: a file error is not a failover.
                    if not is_transient(exc) or is_permission(exc):
                        raise
                    # A failover the nodes ride out: so does the follower.
                    recovered = self._recover(exc)
                    if recovered is None:
                        break  # stopped while waiting
                    cursor = recovered
                    continue
                if got:
                    continue
                if done:
                    break  # finished, and a last round found nothing more
                if state:
                    last_check = time.monotonic()
                    # Closed by a spider's CloseSpider: over, as a Scrapy
                    # process would be (nodes started again begin a new run).
                    done = state in ("finished", "closed")
                    self.ended = state
                    if done:
                        continue
                    if time.monotonic() - last_said >= _SAY_EVERY:
                        last_said = time.monotonic()
                        print(
                            f"following: {self.written} items written; the crawl is {state} "
                            "(this exits once it is finished or closed; Ctrl-C stops it)",
                            file=sys.stderr,
                        )
                time.sleep(_IDLE)
        finally:
            self._close()
        return self.written

    def _recover(self, exc: BaseException) -> Cursor | None:
        """After Redis failed mid-round: wait until it answers, then go on
        from the cursor stored in Redis, as a follower started again does
        (the file is cut back to it: every item once). None if stopped
        while waiting."""
        self._close()
        self.written = self._stored_written  # what is past the cursor is written again
        print(
            f"Redis failed ({type(exc).__name__}: {exc}); following on from the stored "
            "cursor once it answers again (Ctrl-C stops)",
            file=sys.stderr,
        )
        delay = _IDLE
        while not self.stop:
            time.sleep(delay)
            try:
                raw = self.client.hget(self.keys.export, self.cursor_name)
                if raw is None and self._had_cursor:
                    raise RuntimeError(
                        f"the cursor {self.cursor_name!r} is gone from Redis (lost with the "
                        "writes a failover lost?): follow again with a new --cursor and output"
                    )
                # None before this follower stored one: from the start, in
                # the file it began (empty when it started).
                cursor = Cursor(raw, len(self.parts))
                if self.trim:
                    self._trim_upto(cursor)
            except redis.RedisError as again:
                if not is_transient(again) or is_permission(again):
                    raise
                delay = min(delay * 2, 5.0)
                continue
            self._open(cursor)
            print("Redis answers again: following on", file=sys.stderr)
            return cursor
        return None

    def _refuse_existing(self) -> None:
        """A new cursor writes from the start: it never cuts an existing file."""
        path = self.path(1 if self.batch_items else 0)
        if path.exists() and path.stat().st_size:
            raise RuntimeError(
                f"{path} exists and Redis holds no cursor {self.cursor_name!r} for it "
                "(another output, a cursor reset or expired): move the file away, or "
                "give --cursor of the follower that wrote it"
            )

    def _trim_upto(self, cursor: Cursor) -> None:
        for p, part in enumerate(self.parts):
            entries = self.client.xrange(part.itemlog, max=cursor.positions[p], count=100_000)
            if entries:
                ids = [fields[b"i"] for _, fields in entries]
                self._trim(part, ids, _versioned(entries), cursor.positions[p])

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop = True

    def _open(self, cursor: Cursor) -> None:
        """Open the cursor's batch file, cut back to what the cursor counts."""
        path = self.path(cursor.batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "r+b" if path.exists() else "w+b")
        size = handle.seek(0, os.SEEK_END)
        if size > cursor.length:
            print(
                f"{path}: cutting {size - cursor.length} bytes written after the last "
                "stored cursor (they are written again)",
                file=sys.stderr,
            )
        elif size < cursor.length:
            raise RuntimeError(
                f"{path} holds {size} bytes but the cursor {self.cursor_name!r} says "
                f"{cursor.length} were written: the file was changed or replaced; move "
                "it away and follow with a new --cursor, or restore it"
            )
        handle.truncate(cursor.length)
        handle.seek(cursor.length)
        self._handle, self._path = handle, path
        self._exporter = self.make_exporter(handle)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _round(self, cursor: Cursor) -> int:
        """Read each partition's log on from the cursor, write what it names,
        store the cursor; the number of log entries read."""
        read = 0
        self._find_split(cursor)
        self._drop_old_ids()
        for p, part in enumerate(self.parts):
            entries = self.client.xrange(part.itemlog, min=f"({cursor.positions[p]}", count=_READ)
            if not entries:
                continue
            ids = [fields[b"i"] for _, fields in entries]
            # An entry with its value (v) is that version (crawler.recrawl);
            # others name the stored item.
            stored = self.client.hmget(part.items, ids)
            values = [f.get(b"v", v) for (_, f), v in zip(entries, stored, strict=True)]
            exported = []
            for item_id, value in zip(ids, values, strict=True):
                if not trimmed(value):  # by an earlier follower's cursor
                    self._write(cursor, json.loads(value))
                    exported.append(item_id)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            cursor.positions[p] = entries[-1][0].decode()
            cursor.length = self._handle.tell()
            self.client.hset(self.keys.export, self.cursor_name, cursor.dumps())
            self._stored_written, self._had_cursor = self.written, True
            if self.trim:
                self._trim(part, exported, _versioned(entries), cursor.positions[p])
            read += len(entries)
        return read

    def _find_split(self, cursor: Cursor) -> None:
        """A crawl of one partition may be split by its first node after
        this follower started (a second at most): follow every partition."""
        if len(self.parts) > 1 or time.monotonic() - self._split_checked < 1:
            return
        self._split_checked = time.monotonic()
        tags = recorded_tags(self.client, self.keys)
        if len(tags) > 1:
            self.parts = partition_keys(self.keys, tags)
            cursor.split(len(self.parts))

    def _write(self, cursor: Cursor, item: Any) -> None:
        if self.batch_items and cursor.in_batch >= self.batch_items:
            # The batch is full: the next file, from its start.
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._close()
            cursor.batch, cursor.in_batch, cursor.length = cursor.batch + 1, 0, 0
            path = self.path(cursor.batch)
            if path.exists() and path.stat().st_size:
                path.unlink()  # a batch begun before a crash: written again
            self._open(cursor)
        self._exporter.export_item(item)
        cursor.in_batch += 1
        self.written += 1

    def _trim(
        self, part: Keys, exported: list[bytes], versioned: set[bytes], position: str
    ) -> None:
        """Empty the exported items (their ids stay, so an item stored again
        is still known) and trim the log. An item with versions (recrawl)
        keeps a short hash of its value: the same value stored again by a
        changed page is not a new version (commit.lua)."""
        ids = list(dict.fromkeys(exported))
        mine = [i for i in ids if i in versioned]
        current = dict(zip(mine, self.client.hmget(part.items, mine), strict=True)) if mine else {}
        pipe = self.client.pipeline(transaction=False)
        for item_id in ids:
            value = current.get(item_id)
            pipe.hset(
                part.items, item_id, b"" if value is None or trimmed(value) else tombstone(value)
            )
        pipe.xtrim(part.itemlog, minid=position, approximate=False)
        if self.trim_keep and ids:
            now = b"%d|" % int(time.time() * 1000)
            pipe.rpush(part.trimmed, *(now + item_id for item_id in ids))
        pipe.execute()

    def _drop_old_ids(self) -> None:
        """Drop the ids of items trimmed more than trim_keep seconds ago (at
        most once a second), so the items' memory stays flat."""
        if not (self.trim and self.trim_keep) or time.monotonic() - self._dropped_at < 1:
            return
        self._dropped_at = time.monotonic()
        before = int((time.time() - self.trim_keep) * 1000)
        for part in self.parts:
            while self._drop_some(part, before) == _DROP:
                pass

    def _drop_some(self, part: Keys, before: int) -> int:
        entries = self.client.lrange(part.trimmed, 0, _DROP - 1)
        # The old ones at the head only: LTRIM below removes by count.
        old = list(takewhile(lambda e: int(e.split(b"|", 1)[0]) <= before, entries))
        if not old:
            return 0
        ids = [e.split(b"|", 1)[1] for e in old]
        values = self.client.hmget(part.items, ids)
        # Only what is still trimmed: a changed page's item stored since is
        # kept (its version is in the log).
        gone = [i for i, v in zip(ids, values, strict=True) if v is not None and trimmed(v)]
        pipe = self.client.pipeline(transaction=False)
        if gone:
            pipe.hdel(part.items, *gone)
        pipe.ltrim(part.trimmed, len(old), -1)
        pipe.execute()
        return len(old)


def _versioned(entries: list[Any]) -> set[bytes]:
    """Ids of the item log *entries* logged with their value (recrawl)."""
    return {fields[b"i"] for _, fields in entries if b"v" in fields}


def tombstone(value: bytes) -> bytes:
    """What a trimmed item leaves in Redis: "#" and 8 hex digits of its SHA-1
    (commit.lua compares a replacing item's value with it)."""
    return b"#" + hashlib.sha1(value).hexdigest()[:8].encode()


def trimmed(value: bytes | None) -> bool:
    """A stored item value a follower trimmed ("" before tombstones)."""
    return not value or value[:1] == b"#"
