"""Fixtures for the gRPC transport tests: real grpc.aio servers on 127.0.0.1:0 with stub servicers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpc_doubles import (
    Observed,
    StubAdmin,
    StubAuthentication,
    StubEnrollment,
    TokenRecord,
    TokenTable,
)

from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import GrpcServer, GrpcServerSettings, ServiceBinding
from mfad.api.auth import ADMIN_SERVICE, AUTHENTICATION_SERVICE, ENROLLMENT_SERVICE
from mfad.core.model import Role

ADMIN_TOKEN = "admin-token-0123456789"
SERVICE_TOKEN = "service-token-0123456789"
PORTAL_TOKEN = "portal-token-0123456789"
SESSION = "user-session-0123456789"

StartServer = Callable[..., Awaitable[GrpcServer]]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def always_ready() -> bool:
    return True


def stub_bindings(observed: Observed) -> list[ServiceBinding]:
    return [
        ServiceBinding(
            AUTHENTICATION_SERVICE,
            lambda s: pb_grpc.add_AuthenticationServicer_to_server(StubAuthentication(observed), s),
        ),
        ServiceBinding(
            ENROLLMENT_SERVICE,
            lambda s: pb_grpc.add_EnrollmentServicer_to_server(StubEnrollment(observed), s),
        ),
        ServiceBinding(
            ADMIN_SERVICE, lambda s: pb_grpc.add_AdminServicer_to_server(StubAdmin(observed), s)
        ),
    ]


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
