"""Fixtures for tests of mfad's own servicers: the real gRPC front end in this process.

``grpc_mfad`` serves the ``mfa`` fixture (a real store on both engines, the
fixed clock) through :func:`mfad.api.daemon.grpc_service` on 127.0.0.1:0 and
hands out typed clients (``mfad_client``) with admin, service and portal
tokens created through the core. Import the fixture into a test module with
``from real_servicers import grpc_mfad  # noqa: F401``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mfad.api.daemon import grpc_service
from mfad.api.server import GrpcServer
from mfad.config import Config, GrpcSettings
from mfad.core.model import Role
from mfad.core.service import Mfa

_CLIENTS = Path(__file__).resolve().parents[2] / "clients"
if str(_CLIENTS) not in sys.path:  # not installed (a bare PYTHONPATH=. run): use the source tree
    sys.path.insert(0, str(_CLIENTS))

from mfad_client import MfadClient  # noqa: E402


@dataclass
class GrpcMfad:
    """A running gRPC front end over ``mfa`` and clients for each role."""

    mfa: Mfa
    server: GrpcServer
    address: str
    tokens: dict[Role, str]
    registry: CollectorRegistry
    _clients: list[MfadClient] = field(default_factory=list)

    def client(self, role: Role | None = Role.ADMIN, *, token: str | None = None) -> MfadClient:
        c = MfadClient(self.address, token=token if token is not None else (self.tokens[role] if role else None),
                       timeout=10.0)
        self._clients.append(c)
        return c

    @property
    def admin(self) -> MfadClient:
        return self.client(Role.ADMIN)

    @property
    def portal(self) -> MfadClient:
        return self.client(Role.PORTAL)

    @property
    def service(self) -> MfadClient:
        return self.client(Role.SERVICE)

    async def new_token(self, name: str, role: Role) -> str:
        _, token = await self.mfa.callers.create(name, role, actor="test")
        return token


@pytest.fixture
async def grpc_mfad(mfa: Mfa, config: Config) -> AsyncIterator[GrpcMfad]:
    cfg = dataclasses.replace(config, grpc=GrpcSettings(listen=["127.0.0.1:0"], shutdown_grace_seconds=1.0))
    registry = CollectorRegistry()
    server = grpc_service(mfa, cfg, registry)
    await server.start()
    tokens = {}
    for role in Role:
        _, tokens[role] = await mfa.callers.create(f"test-{role.value}", role, actor="test")
    running = GrpcMfad(mfa=mfa, server=server, address=server.addresses[0], tokens=tokens, registry=registry)
    yield running
    for c in running._clients:
        await c.close()
    await server.aclose()
