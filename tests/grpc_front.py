"""mfad's real gRPC front end in the test's process, and typed clients for it.

``start_grpc_front(mfa, config, registry)`` serves ``mfa`` through
:func:`mfad.api.daemon.grpc_service` on 127.0.0.1:0 and makes a caller token per
role through the core; :class:`RoleClients` hands out ``mfad_client`` clients with
those tokens and closes every one it made.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from mfad.api.daemon import grpc_service
from mfad.api.server import GrpcServer
from mfad.config import Config, GrpcSettings
from mfad.core.model import Role
from mfad.core.service import Mfa

_CLIENTS = Path(__file__).resolve().parents[1] / "clients"
if str(_CLIENTS) not in sys.path:  # not installed (a bare PYTHONPATH=. run): use the source tree
    sys.path.insert(0, str(_CLIENTS))

from mfad_client import MfadClient  # noqa: E402


async def start_grpc_front(mfa: Mfa, config: Config,
                           registry: CollectorRegistry) -> tuple[GrpcServer, dict[Role, str]]:
    """The started front end over ``mfa``, and a token per role (caller ``test-<role>``)."""
    cfg = dataclasses.replace(config, grpc=GrpcSettings(listen=["127.0.0.1:0"], shutdown_grace_seconds=1.0))
    server = grpc_service(mfa, cfg, registry)
    await server.start()
    tokens = {role: (await mfa.callers.create(f"test-{role.value}", role, actor="test"))[1] for role in Role}
    return server, tokens


@dataclass(kw_only=True)
class RoleClients:
    """Clients of the front end at ``address``, each with the token of a role (or a given one)."""

    address: str
    tokens: dict[Role, str]
    opened: list[MfadClient] = field(default_factory=list)

    def client(self, role: Role | None = Role.ADMIN, *, token: str | None = None) -> MfadClient:
        c = MfadClient(self.address, token=token if token is not None else (self.tokens[role] if role else None),
                       timeout=10.0)
        self.opened.append(c)
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

    async def close(self) -> None:
        for c in self.opened:
            await c.close()
