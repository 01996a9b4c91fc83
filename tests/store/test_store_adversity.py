"""PostgreSQL going away under a running store: fail closed, then recover by itself.

A small TCP proxy (asyncio, in this test) sits between the store and the real server,
as asyncpg's own ``tests/test_adversity.py`` does. Cutting it mid-query makes every
operation raise ``Unavailable`` — never an accept — and once it is back the same Store
instance works again without being reopened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from mfad.core import totp
from mfad.core.errors import Unavailable
from mfad.core.signin import Attempt
from mfad.store.postgres import PostgresStore

ATTEMPT = Attempt(protocol="test")


class Proxy:
    """Relays TCP between clients and ``upstream``; can hold traffic and cut every link."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.held = asyncio.Event()  # set when a client sent bytes while traffic was held
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        link = (writer, up_writer)
        self.links.add(link)
        for src, dst, watched in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pipe(src, dst, watched))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_client: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
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
        """Drop every link (as a crashed server or a network partition would) and refuse new ones."""
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


def via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{port}"))


@pytest.fixture
async def pg_schema(pg_database: str) -> Any:
    schema = f"t_{secrets.token_hex(8)}"
    conn = await asyncpg.connect(pg_database, timeout=10)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    yield schema
    conn = await asyncpg.connect(pg_database, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_dropped_connection_fails_closed_and_recovers(pg_database: str, pg_schema: str, mfa_factory: Any,
                                                            clock: Any) -> None:
    upstream = urlsplit(pg_database)
    proxy = Proxy(upstream.hostname or "127.0.0.1", upstream.port or 5432)
    await proxy.start()
    direct = await PostgresStore.open(pg_database, schema=pg_schema, pool_size=2)
    proxied = await PostgresStore.open(via(pg_database, proxy.port), schema=pg_schema, pool_size=3, timeout=3.0)
    try:
        await direct.migrate()
        mfa = await mfa_factory(store=proxied)
        await mfa.users.create("alice", None)
        binding = await mfa.devices.begin_totp("alice")
        key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))

        def code(steps: int) -> str:
            return totp.hotp(key, totp.step_at(clock.now(), 30) + steps)

        await mfa.devices.confirm_totp("alice", binding.device.id, code(0))
        confirmed_step = totp.step_at(clock.now(), 30)

        # Mid-use: a verification's query is on the wire when the link drops.
        proxy.hold()
        in_flight = asyncio.create_task(mfa.signin.verify_code("alice", code(1), ATTEMPT))
        async with asyncio.timeout(10):
            await proxy.held.wait()
        proxy.cut()
        with pytest.raises(Unavailable):
            await in_flight

        # While the database cannot be reached, everything fails closed.
        for attempt in (lambda: mfa.signin.verify_code("alice", code(1), ATTEMPT),
                        lambda: mfa.signin.begin("alice", None, ATTEMPT),
                        lambda: mfa.devices.list("alice"),
                        proxied.ping):
            with pytest.raises(Unavailable):
                await attempt()
        device = await direct.load_device(binding.device.id)
        assert device is not None and device.last_step == confirmed_step  # nothing was accepted

        # Back again: the same Store instance reconnects by itself.
        proxy.restore()
        await proxied.ping()
        result = await mfa.signin.verify_code("alice", code(1), ATTEMPT)
        assert result.accepted
        device = await direct.load_device(binding.device.id)
        assert device is not None and device.last_step == confirmed_step + 1
    finally:
        await proxied.aclose()
        await direct.aclose()
        await proxy.close()


async def test_unreachable_server_at_open_is_unavailable(pg_database: str) -> None:
    proxy = Proxy("127.0.0.1", 1)
    await proxy.start()
    proxy.refusing = True
    try:
        with pytest.raises(Unavailable):
            await PostgresStore.open(via(pg_database, proxy.port), timeout=2.0)
    finally:
        await proxy.close()
