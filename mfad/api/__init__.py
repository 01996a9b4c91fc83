"""mfad's gRPC transport: the server, its one interceptor, caller roles, error mapping.

The servicers (added per service) translate between the mfad.v1 messages and
the core's use-case functions; they hold no verification logic. This package
imports the core; the core never imports it.
"""

from mfad.api.auth import (
    AUTHORIZATION_METADATA,
    SESSION_METADATA,
    Caller,
    CallerAuthenticator,
    CallerIdentity,
    current_caller,
    session_of,
)
from mfad.api.metrics import GrpcMetrics, NullGrpcMetrics, PrometheusGrpcMetrics
from mfad.api.server import GrpcServer, GrpcServerSettings, ListenError, ServiceBinding

__all__ = [
    "AUTHORIZATION_METADATA",
    "SESSION_METADATA",
    "Caller",
    "CallerAuthenticator",
    "CallerIdentity",
    "GrpcMetrics",
    "GrpcServer",
    "GrpcServerSettings",
    "ListenError",
    "NullGrpcMetrics",
    "PrometheusGrpcMetrics",
    "ServiceBinding",
    "current_caller",
    "session_of",
]
