"""The RADIUS daemon service on the real core and store, for the sign-in tests.

``start_daemon`` runs :func:`mfad.radius.daemon.radius_service` in the test's event
loop on 127.0.0.1 port 0, over the ``mfa`` fixture's core (so on both store engines),
with the NAS clients and settings a test asks for. Requests come from real peers
(radclient, pamtester, FreeRADIUS) or from pyrad-built packets on a raw UDP socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from radius_peers import SECRET, RadclientResult, radclient

from mfad.config import Config, RadiusClientSettings, RadiusSettings, RadsecSettings
from mfad.core.service import Mfa
from mfad.radius import CountingMetrics, RadiusServer
from mfad.radius.daemon import RadiusService, radius_service

StartDaemon = Callable[..., Awaitable[RadiusServer]]
_SERVICES: weakref.WeakKeyDictionary[RadiusServer, RadiusService] = weakref.WeakKeyDictionary()


def nas(name: str = "lo", *, address: str = "127.0.0.1", **options: Any) -> RadiusClientSettings:
    return RadiusClientSettings(name=name, address=address, secret=SECRET.decode(), **options)


@pytest.fixture
async def start_daemon(mfa: Mfa, config: Config,
                       mfa_factory: Callable[..., Awaitable[Mfa]]) -> AsyncIterator[StartDaemon]:
    """``await start_daemon(mode="otp_only", clients=[...], on=mfa, **radius_settings)``.
    ``challenge_ttl_seconds`` and ``challenge_tries`` are the core's (``[limits]``): with
    them the daemon asks a second core over the same store."""
    running: list[tuple[RadiusService, asyncio.Task[None]]] = []

    async def start(*, mode: str = "challenge", clients: list[RadiusClientSettings] | None = None,
                    on: Mfa | None = None, radsec: RadsecSettings | None = None, **settings: Any) -> RadiusServer:
        values: dict[str, Any] = {"listen": ["127.0.0.1:0"], "reject_delay_seconds": 0.0,
                                  "client_rate_per_second": 10000.0} | settings
        limits = {k: values.pop(k) for k in ("challenge_ttl_seconds", "challenge_tries") if k in values}
        daemon_config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))
        if limits:
            on = await mfa_factory(store=(on or mfa).store, config=daemon_config)
        radius = RadiusSettings(mode=mode, clients=clients if clients is not None else [nas()],  # type: ignore[arg-type]
                                **values)
        service = radius_service(on or mfa, dataclasses.replace(daemon_config, radius=radius,
                                                                 radsec=radsec or config.radsec), None,
                                 metrics=CountingMetrics())
        await service.start()
        _SERVICES[service.server] = service
        running.append((service, asyncio.create_task(service.run())))
        return service.server

    yield start
    for service, task in running:
        await service.aclose()
        await asyncio.wait_for(task, 10)


def address(server: RadiusServer) -> tuple[str, int]:
    return server.addresses[0]


async def radclient_sign_in(server: RadiusServer, username: str, password: str,
                            state: str | None = None) -> RadclientResult:
    """One Access-Request from radclient to ``server``: the name, the password (or the code
    that answers the challenge whose ``state`` is given) and a Message-Authenticator."""
    host, port = address(server)
    lines = [f'User-Name = "{username}"', f'User-Password = "{password}"', "Message-Authenticator = 0x00"]
    if state is not None:
        lines.append(f"State = {state}")
    return await radclient(host, port, lines)


def accounting_address(server: RadiusServer) -> tuple[str, int]:
    """Where the daemon of ``server`` answers accounting (its first accounting listener)."""
    accounting = service_of(server).accounting
    assert accounting is not None, "accounting is off (accounting_listen = [])"
    return accounting.addresses[0]


def service_of(server: RadiusServer) -> RadiusService:
    """The daemon service ``server`` belongs to (its accounting and RadSec listeners)."""
    return _SERVICES[server]
