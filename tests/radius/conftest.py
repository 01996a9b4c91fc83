"""Fixtures for the RADIUS tests: servers on loopback with port 0, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from radius_peers import StartServer, loopback_clients

from mfad.radius import (
    ClientTable,
    CountingMetrics,
    RadiusClient,
    RadiusHandler,
    RadiusServer,
    RadiusServerSettings,
)


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(handler, clients=..., **settings)`` -> a started RadiusServer.

    Defaults: 127.0.0.1 port 0, no reject delay, a CountingMetrics at ``server.metrics``.
    """
    servers: list[RadiusServer] = []

    async def start(
        handler: RadiusHandler,
        *,
        clients: Sequence[RadiusClient] | None = None,
        **settings: Any,
    ) -> RadiusServer:
        options: dict[str, Any] = {"listen": (("127.0.0.1", 0),), "reject_delay": 0.0} | settings
        shared = options.pop("shared_cache", None)
        server = RadiusServer(
            RadiusServerSettings(**options),
            ClientTable(clients if clients is not None else loopback_clients()),
            handler,
            metrics=CountingMetrics(),
            shared_cache=shared,
        )
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.aclose()
