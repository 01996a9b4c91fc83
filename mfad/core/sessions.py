"""User sessions: what a signed-in end user holds between a sign-in and self-service calls.

Guarantees: a session token is 256 random bits, shown once and stored only as
its SHA-256 (no dictionary to attack, one indexed lookup per call); a session
is short-lived (``[grpc] session_ttl_seconds``), bound to the caller it was
issued to (another caller presenting it is refused as if it did not exist),
and records when its user last completed a second factor, so sensitive
operations can ask for a fresh one. Every session of a user is revoked, in the
same transaction, when the password is set or the user is disabled.

This module holds the vocabulary and the store interface only; the use cases
are in :mod:`mfad.core.selfservice`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.model import AuditEvent, EnrolmentProof, Method, StaffRole, UserId

TOKEN_PREFIX = "mfs1_"
#: Well above a generated token (5 + 43 characters); bounds the hash input.
MAX_TOKEN_LENGTH = 256


class SessionScope(StrEnum):
    #: A completed sign-in: every self-service operation the policy allows.
    FULL = "full"
    #: First sign-in of a user who must use MFA and has no device: bind one, nothing else.
    ENROLMENT = "enrolment"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSession:
    id_hash: str
    user_id: UserId
    #: Filled in by the store when the session is loaded (the user's current name).
    username: str
    scope: SessionScope
    #: The caller (gRPC caller name) the session was issued to.
    caller: str
    created_at: datetime
    expires_at: datetime
    #: When the user last completed a second factor in this session (None: never).
    second_factor_at: datetime | None = None
    #: Filled in by the store when the session is loaded: the user's console role now.
    role: StaffRole | None = None
    #: An enrolment session that must still present this proof before binding (None: nothing owed).
    proof_owed: EnrolmentProof | None = None
    #: How the sign-in passed: the second factor's method (``passkey``, ``email`` …) or,
    #: without one, why none was needed (``remembered``, ``mfa_off``, ``enrolment`` …).
    #: Fixed for the session's life; None for sessions older than schema v13.
    signed_in_with: str | None = None
    #: The method of the session's latest second factor (the sign-in's, then each step-up's).
    second_factor_with: str | None = None

    @property
    def is_emergency(self) -> bool:
        """Signed in with the security email: the way back when the usual device is lost."""
        return self.signed_in_with == Method.EMAIL.value


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionNotice:
    """A mail to queue with a new session (the emergency sign-in notice)."""

    user_id: UserId
    #: ``seal(message_id)`` → the sealed body (its AAD names the message row).
    seal: Callable[[int], str]
    expires_at: datetime
    #: ``audit(message_id)`` → the rows recording the queued notice.
    audit: Callable[[int], Sequence[AuditEvent]]


def new_token() -> tuple[str, str]:
    """(token, its hash): the token goes to the caller once, the hash to the store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_token_shaped(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and len(token) <= MAX_TOKEN_LENGTH


class SessionStore(Protocol):
    """The store's part for sessions (implemented by ``mfad.store.sessions``)."""

    async def insert_session(self, session: UserSession, audit: Sequence[AuditEvent],
                             notice: SessionNotice | None = None) -> None:
        """Store a new session (and drop the user's expired ones) with its audit rows and,
        when given, the mail ``notice`` queued in the outbox — all in one transaction."""
        ...

    async def load_session(self, id_hash: str) -> UserSession | None:
        """The session with its user's current name, expired or not (the core decides); None when unknown."""
        ...

    async def update_session_second_factor(self, id_hash: str, at: datetime, audit: Sequence[AuditEvent],
                                           method: str | None = None) -> bool:
        """Record a fresh second factor (of ``method``) on a live session; False when it is gone
        or expired."""
        ...

    async def delete_session(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> bool:
        """End one session (sign-out) with its audit rows; False when it was gone already."""
        ...

    async def delete_sessions(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> int:
        """Revoke every session of a user; how many there were."""
        ...

    async def delete_expired_sessions(self, now: datetime) -> int: ...
