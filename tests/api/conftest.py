"""Fixtures for the gRPC transport tests: real grpc.aio servers on 127.0.0.1:0 with stub servicers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpc_doubles import (
    ADMIN_TOKEN,
    PORTAL_TOKEN,
    SERVICE_TOKEN,
    Observed,
    StartServer,
    TokenRecord,
    TokenTable,
    always_ready,
    stub_bindings,
)

from mfad.api import GrpcServer, GrpcServerSettings
from mfad.core.model import Role

@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
def tokens() -> TokenTable:
    return TokenTable(
        {
            ADMIN_TOKEN: TokenRecord("ops", Role.ADMIN),
            SERVICE_TOKEN: TokenRecord("vpn-gw", Role.SERVICE),
            PORTAL_TOKEN: TokenRecord("portal", Role.PORTAL),
        }
    )


@pytest.fixture
async def start_server(observed: Observed, tokens: TokenTable) -> AsyncIterator[StartServer]:
    """``await start_server(readiness=..., metrics=..., **settings)`` -> a started GrpcServer.

    Listens on 127.0.0.1:0 unless ``listen`` is given; closed after the test.
    """
    servers: list[GrpcServer] = []

    async def start(
        *,
        readiness: Callable[[], Awaitable[bool]] = always_ready,
        metrics: Any = None,
        authenticator: Any = None,
        **settings: Any,
    ) -> GrpcServer:
        settings.setdefault("listen", ("127.0.0.1:0",))
        settings.setdefault("shutdown_grace", 2.0)
        server = GrpcServer(
            GrpcServerSettings(**settings),
            services=stub_bindings(observed),
            authenticator=authenticator or tokens,
            readiness=readiness,
            metrics=metrics,
        )
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.aclose()
