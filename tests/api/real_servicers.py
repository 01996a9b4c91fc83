"""Fixtures for tests of mfad's own servicers: the real gRPC front end in this process.

``grpc_mfad`` serves the ``mfa`` fixture (a real store on both engines, the
fixed clock) through :func:`mfad.api.daemon.grpc_service` on 127.0.0.1:0 and
hands out typed clients (``mfad_client``) with admin, service and portal
tokens created through the core. Import the fixture into a test module with
``from real_servicers import grpc_mfad  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from grpc_front import RoleClients, start_grpc_front
from prometheus_client import CollectorRegistry

from mfad.api.server import GrpcServer
from mfad.config import Config
from mfad.core.model import Role
from mfad.core.service import Mfa


@dataclass(kw_only=True)
class GrpcMfad(RoleClients):
    """A running gRPC front end over ``mfa`` and clients for each role."""

    mfa: Mfa
    server: GrpcServer
    registry: CollectorRegistry

    async def new_token(self, name: str, role: Role) -> str:
        _, token = await self.mfa.callers.create(name, role, actor="test")
        return token


@pytest.fixture
async def grpc_mfad(mfa: Mfa, config: Config) -> AsyncIterator[GrpcMfad]:
    registry = CollectorRegistry()
    server, tokens = await start_grpc_front(mfa, config, registry)
    running = GrpcMfad(mfa=mfa, server=server, address=server.addresses[0], tokens=tokens, registry=registry)
    yield running
    await running.close()
    await server.aclose()
