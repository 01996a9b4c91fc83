"""Caller tokens resolved through the core, with a small time-bounded cache.

Guarantee: a token's answer (its caller, or "unknown") is reused for at most
``ttl`` seconds, keyed by the token's SHA-256 — the clear token is never kept.
A token revoked through this process's Admin API stops working at once
(:meth:`CachedCallers.forget`); one revoked elsewhere (another instance,
``mfad token revoke``) within ``ttl`` seconds. Store failures are not cached:
they propagate as ``Unavailable`` and the call fails closed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from mfad.api.auth import CallerAuthenticator, CallerIdentity
from mfad.core.callers import hash_token

#: Bounds how long a revocation made by another instance may go unnoticed.
DEFAULT_TTL = 5.0
#: Unknown tokens are remembered briefly too, so a flood of bad tokens is not a flood of store reads.
DEFAULT_NEGATIVE_TTL = 2.0
DEFAULT_MAX_ENTRIES = 4096


class CachedCallers:
    def __init__(self, authenticator: CallerAuthenticator, *, ttl: float = DEFAULT_TTL,
                 negative_ttl: float = DEFAULT_NEGATIVE_TTL, max_entries: int = DEFAULT_MAX_ENTRIES,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._authenticator = authenticator
        self._monotonic = monotonic
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, CallerIdentity | None]] = OrderedDict()

    def known(self, token: str) -> tuple[bool, CallerIdentity | None]:
        """(True, the cached answer) while one is fresh, else (False, None): no await, no store."""
        hit = self._entries.get(hash_token(token))
        if hit is not None and hit[0] > self._monotonic():
            return True, hit[1]
        return False, None

    async def authenticate(self, token: str) -> CallerIdentity | None:
        key = hash_token(token)
        now = self._monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        identity = await self._authenticator.authenticate(token)
        self._entries[key] = (now + (self._ttl if identity is not None else self._negative_ttl), identity)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return identity

    def forget(self, name: str) -> None:
        """Drop every cached answer for the caller ``name`` (it was just revoked)."""
        for key in [k for k, (_, who) in self._entries.items() if who is not None and who.name == name]:
            del self._entries[key]
