"""Seed lines from a stream that may stay open (``tail -f urls | scrapy seed -i -``).

A file is read to its end in batches (``crawler.commands.seed``); a pipe,
terminal, socket or FIFO may deliver a line a minute, and a line read must
be queued at once, not when 2,000 more have come. So a thread reads the
stream and hands over what it read as soon as it read it; the seeder
queues whatever it was handed as soon as the stream has nothing more for
the moment. The thread reads through :class:`StoppableReader`, which waits
for data with ``select`` and gives up when told to, so Ctrl-C ends a read
that would otherwise block until the producer writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import select
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

# Lines read and not yet taken, at most: a fast producer waits for the
# seeder rather than filling memory.
_MAX_HELD = 16_000
# How often a blocked read looks whether it was told to stop (seconds).
_STOP_POLL = 0.2


def is_stream(fd: int) -> bool:
    """True if *fd* is not a regular file: a pipe, terminal, socket or FIFO,
    whose end may be far off."""
    return not stat.S_ISREG(os.fstat(fd).st_mode)


class Stopped(Exception):
    """Raised when a read from a :class:`StoppableReader` was told to stop."""


class StoppableReader(io.RawIOBase):
    """Reads the file descriptor *fd* (not closing it) until *stop* is set."""

    def __init__(self, fd: int, stop: threading.Event) -> None:
        super().__init__()
        self._fd = fd
        self._stop = stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._stop.is_set():
                raise Stopped
            ready, _, _ = select.select([self._fd], [], [], _STOP_POLL)
            if ready:
                return os.readv(self._fd, [buffer])


class LineFeed:
    """The lines of a stream, read by a thread and taken by the event loop
    as they come. *open_lines* makes the line iterator in the thread (its
    first read may block); what it enters in the stack it is given is
    closed when the thread ends."""

    def __init__(self, open_lines: Callable[[contextlib.ExitStack], Iterable[str]]) -> None:
        self.stop_reading = threading.Event()
        self.error: BaseException | None = None
        self._open = open_lines
        self._lines: deque[str] = deque()
        self._room = threading.Condition()
        self._ended = False
        self._waiting = False
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._read, name="seed-reader", daemon=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    @property
    def done(self) -> bool:
        """True once the stream ended (or failed: see ``error``) and every
        line was taken."""
        ended = self._ended
        return ended and not self._lines

    def take(self) -> list[str]:
        """The lines read since the last call (none if the stream has
        nothing for the moment)."""
        lines = self._lines
        taken = [lines.popleft() for _ in range(len(lines))]
        if taken:
            with self._room:
                self._room.notify()
        return taken

    async def wait(self, timeout: float) -> None:
        """Until a line arrives, the stream ends, or *timeout* seconds pass."""
        self._arrived.clear()
        # Said before looking, so the reader, which appends before it looks
        # at this, either sees it and wakes us or appended before we look.
        self._waiting = True
        try:
            if self._lines or self._ended:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        finally:
            self._waiting = False

    def stop(self) -> None:
        """Stop reading; returns once the thread is out of its read."""
        self.stop_reading.set()
        with self._room:
            self._room.notify()
        if self._thread.is_alive():
            self._thread.join(5 * _STOP_POLL)

    def _read(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                for line in self._open(stack):
                    self._lines.append(line)
                    if self._waiting:
                        self._wake()
                    if len(self._lines) >= _MAX_HELD:
                        self._wait_for_room()
                    if self.stop_reading.is_set():
                        return
        except Stopped:
            pass
        except BaseException as exc:  # handed to the seeder, which ends with it
            self.error = exc
        finally:
            self._ended = True
            self._wake()

    def _wait_for_room(self) -> None:
        with self._room:
            while len(self._lines) >= _MAX_HELD // 2 and not self.stop_reading.is_set():
                self._room.wait(_STOP_POLL)

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._arrived.set)
