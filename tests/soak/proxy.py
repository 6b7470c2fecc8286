"""A TCP proxy between the nodes and Redis that can cut every connection at
once, wherever the bytes are: a command half sent, a script run whose reply
has not come back yet."""

from __future__ import annotations

import asyncio
import threading


class CuttingProxy:
    """Listens on a free loopback port and forwards each connection to
    ``127.0.0.1:upstream``; ``cut()`` aborts them all (an RST, as a dropped
    network path or a load balancer would). New connections are forwarded as
    before; while Redis is down they are accepted and closed at once."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open: set[asyncio.StreamWriter] = set()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the TCP proxy did not start")

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._open |= pair
        await asyncio.gather(
            self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
        )
        self._open -= pair

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: set[asyncio.StreamWriter]
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in pair:
                end.transport.abort()

    async def _cut(self) -> int:
        victims = list(self._open)
        for writer in victims:
            writer.transport.abort()
        return len(victims) // 2

    def cut(self) -> int:
        """Abort every open connection; returns how many node connections."""
        return asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
