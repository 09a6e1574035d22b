"""A loopback TCP proxy that a fault test cuts and restores, to take the database away from a
real service process and give it back, without touching the database server itself.

`cut()` closes the listening socket (new connections are refused by the kernel, as when a
server is down) and aborts every open connection on both sides (an RST, no buffered bytes
flushed after the cut). `restore()` listens again on the same port, so the service's
`DATABASE_URL` stays valid. Everything runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib

HOST = "127.0.0.1"
CHUNK = 65536


class TcpProxy:
    """Forwards `127.0.0.1:port` to `target_host:target_port` until cut; counts connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.accepted = 0

    @property
    def is_open(self) -> bool:
        """True while the proxy listens and forwards."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on a free port (the first time) or on the same port again (after a cut)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, pair)),
            asyncio.create_task(self._pipe(up_reader, writer, pair)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        # One side ended: end the other one too (PostgreSQL's protocol has no half-close).
        self._pairs.discard(pair)
        for side in pair:
            side.transport.abort()

    async def cut(self) -> None:
        """Refuse new connections and reset every open one, at once."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for pair in list(self._pairs):
            for side in pair:
                side.transport.abort()
        self._pairs.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        """Accept and forward connections again, on the same port."""
        await self.start()

    async def stop(self) -> None:
        """Cut, and wait for every forwarding task to end."""
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
