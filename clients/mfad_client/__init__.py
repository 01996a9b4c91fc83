"""A typed async Python client for mfad's gRPC API (package mfad.v1), and ``mfactl``.

    from mfad_client import MfadClient

    async with MfadClient.from_env() as mfad:            # MFAD_ADDR, MFAD_TOKEN, MFAD_TLS_*
        if await mfad.auth.verify_code("alice", code) is VerifyOutcome.ACCEPTED:
            ...

Calls return frozen dataclasses (:mod:`mfad_client.types`); failed calls raise
:class:`~mfad_client.errors.ClientError` subclasses named after the gRPC status.
"""

from mfad_client.client import MfadClient, TlsFiles
from mfad_client.errors import (
    AlreadyExists,
    ClientError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from mfad_client.types import (
    ApprovalOutcome,
    ApprovalStatus,
    ClientInfo,
    EnrolmentProof,
    Method,
    MfaRequired,
    PolicyRule,
    Role,
    StaffRole,
    SessionScope,
    SignInOutcome,
    StepUpOutcome,
    VerifyOutcome,
    to_json,
)

__all__ = [
    "AlreadyExists",
    "ApprovalOutcome",
    "ApprovalStatus",
    "ClientError",
    "ClientInfo",
    "EnrolmentProof",
    "FailedPrecondition",
    "InvalidArgument",
    "Method",
    "MfaRequired",
    "MfadClient",
    "NotFound",
    "PermissionDenied",
    "PolicyRule",
    "ResourceExhausted",
    "Role",
    "StaffRole",
    "SessionScope",
    "SignInOutcome",
    "StepUpOutcome",
    "TlsFiles",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "VerifyOutcome",
    "to_json",
]
