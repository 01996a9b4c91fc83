"""The gRPC front end as one daemon service: ``[grpc]`` settings, servicers, callers, health.

``mfad.app`` imports :func:`grpc_service` and runs what it returns beside the
other services (``run()`` until ``aclose()``, which drains in-flight calls
within ``grpc.shutdown_grace_seconds``). Readiness is a store ping: the
standard health service says NOT_SERVING while the store does not answer, and
every call that needs the store fails closed with UNAVAILABLE meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from mfad.api.callers import CachedCallers
from mfad.api.metrics import PrometheusGrpcMetrics
from mfad.api.server import GrpcServer, GrpcServerSettings
from mfad.api.servicers import AdminServicer, AuthenticationServicer, EnrollmentServicer, binding
from mfad.config import Config, GrpcSettings
from mfad.core.errors import Unavailable
from mfad.core.service import Mfa

if TYPE_CHECKING:
    from mfad.observability.http import HealthState

#: How often health is re-checked: how long a lost store may go before NOT_SERVING is said.
HEALTH_INTERVAL = 2.0
READINESS_TIMEOUT = 2.0
#: grpc's stop() needs a positive grace; "0" in the config means "as short as possible".
MIN_GRACE = 0.05


def server_settings(g: GrpcSettings) -> GrpcServerSettings:
    return GrpcServerSettings(
        listen=tuple(g.listen),
        tls_cert=Path(g.tls_cert) if g.tls_cert else None,
        tls_key=Path(g.tls_key) if g.tls_key else None,
        client_ca=Path(g.client_ca) if g.client_ca else None,
        client_roles=MappingProxyType(dict(g.client_roles)),
        max_receive_message_bytes=g.max_message_bytes,
        shutdown_grace=max(MIN_GRACE, g.shutdown_grace_seconds),
        health_interval=HEALTH_INTERVAL,
        readiness_timeout=READINESS_TIMEOUT,
    )


def grpc_service(mfa: Mfa, config: Config, registry: CollectorRegistry, health: HealthState | None = None) -> GrpcServer:
    """The gRPC server over ``mfa`` (not started: the daemon calls ``run()``)."""
    callers = CachedCallers(mfa.callers)
    issuer = config.totp.issuer
    services = [
        binding(AuthenticationServicer(mfa, approve_url=config.portal.approve_url), "Authentication"),
        binding(EnrollmentServicer(mfa, issuer=issuer), "Enrollment"),
        binding(AdminServicer(mfa, issuer=issuer, on_token_revoked=callers.forget), "Admin"),
    ]

    async def store_answers() -> bool:
        try:
            await mfa.store.ping()
        except Unavailable:
            return False
        return True

    return GrpcServer(server_settings(config.grpc), services=services, authenticator=callers,
                      readiness=store_answers, metrics=PrometheusGrpcMetrics(registry))
