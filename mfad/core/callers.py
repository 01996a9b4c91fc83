"""Caller tokens for the gRPC API: random bearer tokens stored only as hashes.

A token is 256 random bits; SHA-256 is the right hash for it (no dictionary to
attack), and lets a request be authenticated with one indexed lookup. A token
may carry an expiry: from then on it is refused like a revoked one.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput, NotFound
from mfad.core.model import AuditEvent, CallerToken, Role
from mfad.core.ports import CallerStore

TOKEN_PREFIX = "mfad_"
MAX_TOKEN_LENGTH = 128


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class CallerService:
    def __init__(self, store: CallerStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(self, name: str, role: Role, *, actor: str | None = None,
                     expires_at: datetime | None = None) -> tuple[CallerToken, str]:
        """A new token; the clear value is returned once and never stored. ``expires_at``
        None: it never expires."""
        if not name or len(name) > 100 or not name.isprintable():
            raise InvalidInput("name", "must be 1 to 100 printable characters")
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at", "must be in the future")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expiry = f" expires={expires_at.isoformat()}" if expires_at is not None else ""
        caller = await self._store.insert_caller_token(name, Role(role), hash_token(token), now, [
            AuditEvent(event="token_created", outcome="ok", actor=actor, detail=f"name={name} role={role}{expiry}")],
            expires_at=expires_at)
        return caller, token

    async def authenticate(self, token: str) -> CallerToken | None:
        """The live caller of ``token``: None for an unknown, revoked or expired one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        caller = await self._store.load_caller_by_hash(hash_token(token))
        return caller if caller is not None and caller.is_live(self._clock.now()) else None

    async def list(self) -> list[CallerToken]:
        return await self._store.list_caller_tokens()

    async def revoke(self, name: str, *, actor: str | None = None) -> None:
        if not await self._store.revoke_caller_token(name, self._clock.now(), [
                AuditEvent(event="token_revoked", outcome="ok", actor=actor, detail=f"name={name}")]):
            raise NotFound(f"no live token named {name!r}")
