"""The one table from the core's exceptions to gRPC status codes.

Guarantee: every :class:`~mfad.core.errors.MfadError` that reaches the gRPC
layer becomes exactly one status code chosen here, by the nearest class in the
exception's MRO; anything not in the table (and any non-mfad exception) is
``INTERNAL`` with a fixed message, so no internal detail reaches a caller. The
core's messages name the bad field but never a secret or whether a user
exists (mfad/core/errors.py), so they are passed on for the mapped classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from mfad.core.errors import (
    AlreadyExists,
    InvalidInput,
    MfadError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

#: DESIGN.md §3. Classes absent here (ConfigError, SecretsError, SchemaError,
#: MfadError itself) are faults of this server, not of the call: INTERNAL.
STATUS_BY_ERROR: Mapping[type[MfadError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    PreconditionFailed: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}

INTERNAL_MESSAGE = "internal error"
UNAVAILABLE_MESSAGE = "service unavailable, try again later"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller gets for ``exc``."""
    if isinstance(exc, MfadError):
        for cls in type(exc).__mro__:
            code = STATUS_BY_ERROR.get(cls)
            if code is not None:
                if code is grpc.StatusCode.UNAVAILABLE:
                    # The store's or mailer's words may name hosts: keep them in the log.
                    return code, UNAVAILABLE_MESSAGE
                return code, str(exc) or code.name.lower().replace("_", " ")
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
