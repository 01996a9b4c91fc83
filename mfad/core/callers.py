"""Caller tokens for the gRPC API: random bearer tokens stored only as hashes.

A token is 256 random bits; SHA-256 is the right hash for it (no dictionary to
attack), and lets a request be authenticated with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

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

    async def create(self, name: str, role: Role, *, actor: str | None = None) -> tuple[CallerToken, str]:
        """A new token; the clear value is returned once and never stored."""
        if not name or len(name) > 100 or not name.isprintable():
            raise InvalidInput("name", "must be 1 to 100 printable characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        caller = await self._store.insert_caller_token(name, Role(role), hash_token(token), self._clock.now(), [
            AuditEvent(event="token_created", outcome="ok", actor=actor, detail=f"name={name} role={role}")])
        return caller, token

    async def authenticate(self, token: str) -> CallerToken | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        caller = await self._store.load_caller_by_hash(hash_token(token))
        return None if caller is None or caller.revoked else caller

    async def list(self) -> list[CallerToken]:
        return await self._store.list_caller_tokens()

    async def revoke(self, name: str, *, actor: str | None = None) -> None:
        if not await self._store.revoke_caller_token(name, self._clock.now(), [
                AuditEvent(event="token_revoked", outcome="ok", actor=actor, detail=f"name={name}")]):
            raise NotFound(f"no live token named {name!r}")
