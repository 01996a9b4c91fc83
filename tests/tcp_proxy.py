"""A TCP relay between a store and its PostgreSQL that a test can hold and cut.

As asyncpg's ``tests/test_adversity.py`` does: ``cut()`` drops every link and refuses
new ones (a network partition, a crashed server), ``restore()`` lets traffic in again,
``hold()`` keeps the clients' bytes back until the next ``cut()`` and sets ``held``
when a client sent some meanwhile (a query in flight). ``round_trips`` counts the
times a client spoke again after its server had answered (or for the first time on
a link): with one query at a time, the client's waits for its server.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.held = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.round_trips = 0
        self._answered: dict[asyncio.StreamWriter, bool] = {}

    @classmethod
    def to(cls, dsn: str) -> TcpProxy:
        """A proxy to the server of ``dsn``."""
        parts = urlsplit(dsn)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its server replaced by this proxy."""
        parts = urlsplit(dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.links.add((writer, up_writer))
        self._answered[writer] = True
        for src, dst, from_client in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pipe(src, dst, from_client, writer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_client: bool,
                    client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if from_client and self._answered.get(client):
                    self.round_trips += 1
                self._answered[client] = not from_client
                if from_client and not self.flowing.is_set():
                    self.held.set()
                    await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    def hold(self) -> None:
        self.held.clear()
        self.flowing.clear()

    def cut(self) -> None:
        self.refusing = True
        for client, upstream in self.links:
            client.transport.abort()
            upstream.transport.abort()
        self.links.clear()
        self.flowing.set()

    def restore(self) -> None:
        self.refusing = False

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
