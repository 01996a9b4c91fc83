"""PostgreSQL going away under a running store: fail closed, then recover by itself.

A small TCP proxy (``tcp_proxy``) sits between the store and the real server,
as asyncpg's own ``tests/test_adversity.py`` does. Cutting it mid-query makes every
operation raise ``Unavailable`` — never an accept — and once it is back the same Store
instance works again without being reopened.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from mfad.core import totp
from mfad.core.errors import Unavailable
from mfad.core.verification import Attempt
from mfad.store.postgres import PostgresStore
from signin_calls import begin, verify_code
from tcp_proxy import TcpProxy

ATTEMPT = Attempt(protocol="test")


async def test_dropped_connection_fails_closed_and_recovers(pg_database: str, pg_schema: str, mfa_factory: Any,
                                                            clock: Any) -> None:
    proxy = TcpProxy.to(pg_database)
    await proxy.start()
    direct = await PostgresStore.open(pg_database, schema=pg_schema, pool_size=2)
    proxied = await PostgresStore.open(proxy.dsn(pg_database), schema=pg_schema, pool_size=3, timeout=3.0)
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
        in_flight = asyncio.create_task(verify_code(mfa.signin, "alice", code(1), ATTEMPT))
        async with asyncio.timeout(10):
            await proxy.held.wait()
        proxy.cut()
        with pytest.raises(Unavailable):
            await in_flight

        # While the database cannot be reached, everything fails closed.
        for attempt in (lambda: verify_code(mfa.signin, "alice", code(1), ATTEMPT),
                        lambda: begin(mfa.signin, "alice", None, ATTEMPT),
                        lambda: mfa.devices.list("alice"),
                        proxied.ping):
            with pytest.raises(Unavailable):
                await attempt()
        device = await direct.load_device(binding.device.id)
        assert device is not None and device.last_step == confirmed_step  # nothing was accepted

        # Back again: the same Store instance reconnects by itself.
        proxy.restore()
        await proxied.ping()
        result = await verify_code(mfa.signin, "alice", code(1), ATTEMPT)
        assert result.accepted
        device = await direct.load_device(binding.device.id)
        assert device is not None and device.last_step == confirmed_step + 1
    finally:
        await proxied.aclose()
        await direct.aclose()
        await proxy.close()


async def test_unreachable_server_at_open_is_unavailable(pg_database: str) -> None:
    proxy = TcpProxy("127.0.0.1", 1)
    await proxy.start()
    proxy.refusing = True
    try:
        with pytest.raises(Unavailable):
            await PostgresStore.open(proxy.dsn(pg_database), timeout=2.0)
    finally:
        await proxy.close()
