"""PostgreSQL cut off from a running ``mfad serve``: health says NOT_SERVING, calls fail closed
with UNAVAILABLE, and once the link is back everything works again without a restart.

The cut is made by a TCP proxy this test runs between mfad and the shared server (which
is never stopped): every link is dropped and new ones are refused, as in a partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from e2e_daemon import StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import AuthenticatorApp, health
from tcp_proxy import TcpProxy
from grpc_health.v1 import health_pb2

from mfad_client import Unavailable, VerifyOutcome

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["postgres"])]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_store_outage_fails_closed_and_recovers_without_restart(mfad_daemon: StartDaemon,
                                                                      pg_database: str) -> None:
    proxy = TcpProxy.to(pg_database)
    await proxy.start()
    try:
        mfad = await mfad_daemon(proxy_port=proxy.port)
        admin = mfad.client("ops").admin
        gateway = mfad.client("gw").auth
        await admin.create_user("ivan", "pw-0123456789")
        provisioning = await admin.bind_totp("ivan")
        app = AuthenticatorApp(provisioning.secret_base32)
        await admin.confirm_totp("ivan", provisioning.device_id, await app.next_code())
        assert await health(mfad.address) == SERVING

        proxy.cut()
        code = await app.next_code()
        with pytest.raises(Unavailable):
            await gateway.verify_code("ivan", code)
        with pytest.raises(Unavailable):
            await admin.get_user("ivan")

        async def not_serving() -> bool:
            return await health(mfad.address) == NOT_SERVING

        async def not_ready() -> bool:
            status, _ = mfad.daemon.http("/readyz")
            return status == 503

        # gRPC health and /readyz are fed by two independent store probes (each every
        # couple of seconds): each must say "not ready" in bounded time, in either order.
        await eventually(not_serving)
        await eventually(not_ready)
        fresh_caller = mfad.client("portal").auth
        with pytest.raises(Unavailable):  # a caller not cached yet cannot be checked: closed too
            await fresh_caller.verify_code("ivan", code)

        proxy.restore()

        async def serving() -> bool:
            return await health(mfad.address) == SERVING

        await eventually(serving)
        # The code refused while the store was away was never accepted: it still works once.
        assert await gateway.verify_code("ivan", code) is VerifyOutcome.ACCEPTED
        assert await gateway.verify_code("ivan", code) is VerifyOutcome.REFUSED
        assert mfad.daemon.proc is not None and mfad.daemon.proc.poll() is None  # never restarted
        assert "grpc health: NOT_SERVING" in mfad.daemon.log()
        assert await mfad.daemon.stop() == 0
    finally:
        await proxy.close()
