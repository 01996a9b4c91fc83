"""Duplicate detection for RADIUS requests (RFC 5080 §2.2.2).

A request is identified by the NAS's source address and port, the Identifier and the
Request Authenticator (:class:`RequestKey`). Guarantee: while a request is being
decided, retransmissions of it are not processed again; once its reply exists, a
retransmission gets the very same octets for ``ttl`` seconds without reaching the
handler — so a lost Access-Accept is re-sent, never turned into a replay refusal.

Two layers: :class:`ReplyCache` in this process (always), and an optional
:class:`SharedReplyCache` (e.g. a table in the shared store) so that a retransmission
that a load balancer or SO_REUSEPORT steers to another instance gets the same answer;
a :class:`ClaimingReplyCache` also keeps that instance from deciding it while the first
one is still at work.
"""

from __future__ import annotations

import hashlib
from collections import deque
from enum import Enum
from typing import Final, NamedTuple, Protocol, runtime_checkable


class RequestKey(NamedTuple):
    """A request's identity. The cache keeps it as a plain tuple (see ``_Entry``)."""

    host: str
    port: int
    identifier: int
    authenticator: bytes

    def digest(self) -> bytes:
        """A fixed-size, unambiguous key for a shared store (SHA-256 of the fields)."""
        host = self.host.encode()
        return hashlib.sha256(
            len(host).to_bytes(1, "big")
            + host
            + self.port.to_bytes(2, "big")
            + self.identifier.to_bytes(1, "big")
            + self.authenticator
        ).digest()


class SharedReplyCache(Protocol):
    """Replies shared between instances (e.g. a table in the store, keyed by
    :meth:`RequestKey.digest`, rows expiring after ``ttl`` seconds).

    ``load_reply`` is asked for every request this process has not seen; ``save_reply``
    runs before the reply is sent, so a retransmission that reaches another instance
    after the NAS missed the reply finds it. Both calls are bounded by the server's
    ``shared_cache_timeout``; a failure is logged and the request is processed as if
    there were no shared layer.
    """

    async def load_reply(self, key: RequestKey) -> bytes | None: ...

    async def save_reply(self, key: RequestKey, reply: bytes, ttl: float) -> None: ...


class Claim(Enum):
    """What a :class:`ClaimingReplyCache` says about a request no reply exists for yet."""

    OWNED = "owned"
    """This instance holds the claim: decide, then ``save_reply`` (or ``release_reply``)."""
    IN_FLIGHT = "in_flight"
    """Another instance holds it and is deciding now."""


@runtime_checkable
class ClaimingReplyCache(SharedReplyCache, Protocol):
    """A shared cache that also closes the in-flight race between instances.

    ``claim_reply`` replaces ``load_reply`` for a new request: one atomic step that
    returns the saved reply, or :attr:`Claim.IN_FLIGHT` when another instance holds an
    unexpired claim (the server then waits up to ``shared_wait`` for its reply and
    otherwise stays silent — the NAS retransmits), or :attr:`Claim.OWNED`. A claim
    expires after ``hold`` seconds, so an instance that dies mid-request blocks nobody
    for long; a request decided with no reply gives its claim back.
    """

    async def claim_reply(self, key: RequestKey, hold: float) -> bytes | Claim: ...

    async def release_reply(self, key: RequestKey) -> None: ...


class Pending(Enum):
    """A cached request that has no reply to send (yet)."""

    IN_FLIGHT = "in_flight"
    """Being decided now."""
    HELD = "held"
    """Decided, but its reply waits out the reject delay: sending it now would skip it."""


# Entries are plain tuples of atoms: (reply or None, send_at, expires). The garbage
# collector untracks exact tuples whose items are all atoms, and only those (not
# NamedTuples), so the (up to 100,000) cached requests cost full collections nothing.
_Entry = tuple[bytes | None, float, float]
_Key = tuple[str, int, int, bytes]


def _plain(key: RequestKey) -> _Key:
    return (key[0], key[1], key[2], key[3])


class ReplyCache:
    """In-process duplicate cache, bounded in size; time comes from the caller."""

    def __init__(self, *, ttl: float = 10.0, max_entries: int = 100_000) -> None:
        self._ttl: Final = ttl
        self._max_entries: Final = max_entries
        self._entries: dict[_Key, _Entry] = {}
        # (expiry, key) in completion order; expiry grows with it since ttl is fixed.
        self._expiry: deque[tuple[float, _Key]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: RequestKey, now: float) -> bytes | Pending | None:
        """The reply to re-send, a reason to stay silent, or None for a new request."""
        self._expire(now)
        plain = _plain(key)
        entry = self._entries.get(plain)
        if entry is None:
            return None
        reply, send_at, expires = entry
        if reply is None:
            return Pending.IN_FLIGHT
        if expires <= now:
            # Expiry order follows completion order only up to the reject delay.
            del self._entries[plain]
            return None
        if now < send_at:
            return Pending.HELD
        return reply

    def begin(self, key: RequestKey) -> None:
        """Mark a request as being decided."""
        self._entries[_plain(key)] = (None, 0.0, float("inf"))

    def complete(self, key: RequestKey, reply: bytes, send_at: float) -> None:
        """Record the reply, re-sendable from ``send_at`` until ``send_at + ttl``."""
        plain = _plain(key)
        expires = send_at + self._ttl
        self._entries[plain] = (reply, send_at, expires)
        self._expiry.append((expires, plain))
        while len(self._expiry) > self._max_entries:
            oldest_expiry, oldest = self._expiry.popleft()
            entry = self._entries.get(oldest)
            if entry is not None and entry[2] == oldest_expiry:
                del self._entries[oldest]

    def forget(self, key: RequestKey) -> None:
        """Drop a request that got no reply, so a retransmission is decided afresh."""
        plain = _plain(key)
        entry = self._entries.get(plain)
        if entry is not None and entry[0] is None:
            del self._entries[plain]

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            expires, key = expiry.popleft()
            entry = self._entries.get(key)
            if entry is not None and entry[2] == expires:
                del self._entries[key]
