"""Who is calling and what they may call: caller credentials and the role table.

Guarantee: a caller is identified only by a bearer token that the core
resolves, or by the subject CN of a client certificate that the TLS layer
verified against the configured client CA and that the configuration maps to a
role; nothing else (no peer address, no unverified certificate field) counts.
Each RPC is allowed by exactly one table, :data:`ROLE_SERVICES` — or, for a call
made on behalf of a signed-in user, :data:`ON_BEHALF_SERVICES`, after which the
core checks that user's console role; health and reflection are the only
services open without credentials. Tokens are never
logged or kept beyond the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2
from mfad.core.model import Role

#: Metadata carrying the caller credential: ``authorization: Bearer <token>``.
AUTHORIZATION_METADATA = "authorization"
#: Metadata carrying the end user's session token on Enrollment calls.
SESSION_METADATA = "x-mfad-session"

_SERVICES = mfad_pb2.DESCRIPTOR.services_by_name
AUTHENTICATION_SERVICE: str = _SERVICES["Authentication"].full_name
ENROLLMENT_SERVICE: str = _SERVICES["Enrollment"].full_name
ADMIN_SERVICE: str = _SERVICES["Admin"].full_name
MFAD_SERVICES: tuple[str, ...] = (AUTHENTICATION_SERVICE, ENROLLMENT_SERVICE, ADMIN_SERVICE)

#: Callable without credentials: load balancers and grpcurl must reach these.
PUBLIC_SERVICES: frozenset[str] = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

#: The role table (DESIGN.md §3). ROLE_ADMIN is not listed: it may call everything.
ROLE_SERVICES: Mapping[Role, frozenset[str]] = {
    Role.SERVICE: frozenset({AUTHENTICATION_SERVICE}),
    Role.PORTAL: frozenset({AUTHENTICATION_SERVICE, ENROLLMENT_SERVICE}),
}

#: Services whose every call acts for a signed-in end user (SESSION_METADATA).
SESSION_SERVICES: frozenset[str] = frozenset({ENROLLMENT_SERVICE})

#: Services a role may call only on behalf of a signed-in user (SESSION_METADATA on every
#: call): the portal's console. The servicer then checks that user's console role per call;
#: without a session the call is refused here (PERMISSION_DENIED).
ON_BEHALF_SERVICES: Mapping[Role, frozenset[str]] = {
    Role.PORTAL: frozenset({ADMIN_SERVICE}),
}

#: Tokens mfad issues are URL-safe base64 of 32 random bytes plus a short
#: prefix; 256 visible ASCII characters leaves room and bounds the lookup.
MAX_TOKEN_LENGTH = 256
_TOKEN = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_TOKEN_LENGTH)
#: The scheme case-insensitive, the token not (under IGNORECASE a range would also match the
#: Kelvin sign and the long s): one match per call checks both.
_BEARER = re.compile(r"(?i:bearer) +([\x21-\x7e]{1,%d}) *" % MAX_TOKEN_LENGTH)


class CallerIdentity(Protocol):
    """What the core answers for a valid token (its caller-token record fits)."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Role: ...


class CallerAuthenticator(Protocol):
    """Implemented by the core: resolves a bearer token to its caller."""

    async def authenticate(self, token: str) -> CallerIdentity | None:
        """The caller holding ``token``, or None when it is unknown or revoked.

        Raises :class:`mfad.core.errors.Unavailable` when the store cannot
        answer (the call then fails closed with UNAVAILABLE).
        """
        ...


class CredentialKind(StrEnum):
    TOKEN = "token"
    CERTIFICATE = "certificate"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of the current RPC."""

    name: str
    role: Role
    via: CredentialKind


def service_of(method: str) -> str:
    """``"/mfad.v1.Admin/GetUser"`` -> ``"mfad.v1.Admin"``."""
    return method.lstrip("/").split("/", 1)[0]


def may_call(role: Role, service: str) -> bool:
    return role is Role.ADMIN or service in ROLE_SERVICES.get(role, frozenset())


def may_call_on_behalf(role: Role, service: str) -> bool:
    """Whether ``role`` may call ``service`` for a signed-in user (whose role then decides)."""
    return service in ON_BEHALF_SERVICES.get(role, frozenset())


def bearer_token(values: list[str]) -> str | None:
    """The token of the one ``authorization`` value; None when absent or malformed."""
    if len(values) != 1:
        return None
    match = _BEARER.fullmatch(values[0])
    return None if match is None else match.group(1)


def session_token(values: list[str]) -> str | None:
    """The one ``x-mfad-session`` value when well-formed, else None."""
    if len(values) != 1 or not _TOKEN.fullmatch(values[0]):
        return None
    return values[0]


def session_of(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The call's well-formed ``x-mfad-session`` token, or None (for servicers).

    On Enrollment calls the interceptor has already refused calls without one;
    whether the token names a live session is the core's to decide.
    """
    values = [v for k, v in context.invocation_metadata() or () if k == SESSION_METADATA]
    return session_token([v for v in values if isinstance(v, str)])


def certificate_caller(
    auth_context: Mapping[str, Iterable[bytes]], client_roles: Mapping[str, Role]
) -> Caller | None:
    """The caller named by a verified client certificate's subject CN, if mapped.

    Only call this when the server requires client certificates signed by the
    configured CA: grpc then has verified the chain before the call exists.
    """
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        return None
    names = list(auth_context.get("x509_common_name", ()))
    if len(names) != 1:
        return None
    try:
        cn = names[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    role = client_roles.get(cn)
    return None if role is None else Caller(name=cn, role=role, via=CredentialKind.CERTIFICATE)


_current: ContextVar[Caller | None] = ContextVar("mfad_grpc_caller", default=None)


def current_caller() -> Caller:
    """The caller of the RPC being served (set by the interceptor before the servicer runs)."""
    caller = _current.get()
    if caller is None:
        raise RuntimeError("current_caller() outside an authenticated RPC")
    return caller


def bind_caller(caller: Caller) -> Token[Caller | None]:
    """Make ``caller`` the current caller (the interceptor does this per call)."""
    return _current.set(caller)


def unbind_caller(token: Token[Caller | None]) -> None:
    _current.reset(token)
