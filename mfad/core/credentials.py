"""WebAuthn credentials and ceremonies: the vocabulary and the store interface.

A passkey or legacy U2F key is a device (``devices`` row: name, state, times,
display details) plus its credential (``webauthn_credentials``: id, public
key, signature counter). A ceremony is the server-side state of one
registration or sign-in: a random id with a TTL, consumed once.

Guarantees the store gives (``mfad.store.webauthn``):
- a credential id is registered at most once, across all users;
- ``consume_ceremony`` hands a ceremony out at most once (delete-returning);
- ``accept_webauthn`` raises the stored signature counter only forward (or
  keeps both at zero), in the same transaction that consumes the sign-in
  challenge, resets the user's counters and writes the audit rows;
- adding a credential and retiring the U2F key it replaces happen in one
  transaction, or not at all.

The use cases are in :mod:`mfad.core.webauthn`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.model import AuditEvent, Device, DeviceId, Method, RememberedDevice, UserId, WebauthnInfo


class CeremonyPurpose(StrEnum):
    REGISTER = "register"
    UPGRADE = "upgrade"
    SIGNIN = "signin"
    USERNAMELESS = "usernameless"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ceremony:
    """One WebAuthn ceremony in progress. ``state`` is the core's JSON (opaque to the store)."""

    id_hash: str
    purpose: CeremonyPurpose
    user_id: UserId | None
    challenge: bytes
    state: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCredential:
    device_id: DeviceId
    user_id: UserId
    method: Method
    credential_id: bytes
    #: The COSE public key, CBOR-encoded.
    public_key: bytes
    sign_count: int
    #: U2F: the AppID; None for passkeys.
    app_id: str | None
    info: WebauthnInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCredential:
    """A credential to store with its new (active) device."""

    method: Method
    name: str
    credential_id: bytes
    public_key: bytes
    sign_count: int
    app_id: str | None
    info: WebauthnInfo


class DuplicateCredential(Exception):
    """The credential id is registered already (to this or another user)."""


class WebauthnStore(Protocol):
    async def load_user_handle(self, user_id: UserId) -> bytes | None: ...
    async def ensure_user_handle(self, user_id: UserId, candidate: bytes) -> bytes:
        """The user's WebAuthn user handle, storing ``candidate`` if there is none yet."""
        ...
    async def load_user_by_handle(self, handle: bytes) -> UserId | None: ...

    async def load_credentials(self, user_id: UserId) -> list[StoredCredential]: ...
    async def load_credential(self, credential_id: bytes) -> StoredCredential | None: ...

    async def insert_ceremony(self, ceremony: Ceremony, audit: Sequence[AuditEvent]) -> None:
        """Insert, or replace the ceremony with the same id (a restarted sign-in method)."""
        ...
    async def load_ceremony(self, id_hash: str) -> Ceremony | None: ...
    async def consume_ceremony(self, id_hash: str) -> Ceremony | None:
        """Delete and return the ceremony (expired or not: the caller decides); None when
        it does not exist or another request consumed it first."""
        ...

    async def insert_webauthn_device(self, user_id: UserId, credential: NewCredential, now: datetime,
                                     audit: Callable[[DeviceId], Sequence[AuditEvent]], *,
                                     retire: DeviceId | None = None) -> Device:
        """The device and its credential, active at once; revokes the user's remembered
        devices. With ``retire``: that U2F device of the user is deleted in the same
        transaction (PreconditionFailed, nothing written, when it is gone). Raises
        DuplicateCredential when the credential id is taken."""
        ...

    async def accept_webauthn(self, device_id: DeviceId, user_id: UserId, sign_count: int, info: WebauthnInfo,
                              now: datetime, challenge_hash: str | None, audit: Sequence[AuditEvent],
                              remember: RememberedDevice | None = None,
                              remember_hash: str | None = None) -> bool:
        """The counter guard and the success, atomically; False (nothing written) when the
        counter did not move forward or the challenge was already used."""
        ...

    async def delete_expired_ceremonies(self, now: datetime) -> int: ...
