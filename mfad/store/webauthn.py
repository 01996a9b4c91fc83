"""The store's part for passkeys and U2F keys (``mfad.core.credentials.WebauthnStore``),
mixed into SqlStore.

The SQL is the subset both engines share (``$n`` parameters, ``RETURNING``,
``ON CONFLICT``). Guarantees: a credential id is stored once across all users
(unique index, ``ON CONFLICT DO NOTHING``); a ceremony is handed out once
(``DELETE … RETURNING``); the signature counter moves only forward, in one
conditional ``UPDATE`` — two racing assertions carrying the same counter value
cannot both win — and in the same transaction as the challenge it consumes,
the reset of the user's failure counters and the audit rows; a new credential
and the U2F key it replaces change in one transaction.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mfad.core.credentials import (
    Ceremony,
    CeremonyPurpose,
    DuplicateCredential,
    NewCredential,
    StoredCredential,
)
from mfad.core.errors import PreconditionFailed
from mfad.core.model import AuditEvent, Device, DeviceId, Method, RememberedDevice, UserId, WebauthnInfo
from mfad.store.sql import DEVICE_COLUMNS, Rollback, SqlParts, device_from

_CREDENTIAL_COLUMNS = ("c.device_id, c.user_id, c.credential_id, c.public_key, c.sign_count, c.app_id, "
                       "d.method, d.data")
_CEREMONY_COLUMNS = "id_hash, purpose, user_id, challenge, state, created_at, expires_at"


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _credential_from(row: Any) -> StoredCredential:
    return StoredCredential(device_id=DeviceId(row["device_id"]), user_id=UserId(row["user_id"]),
                            method=Method(row["method"]), credential_id=b64d(row["credential_id"]),
                            public_key=b64d(row["public_key"]), sign_count=int(row["sign_count"]),
                            app_id=row["app_id"], info=WebauthnInfo.from_json(row["data"]))


def _ceremony_from(row: Any) -> Ceremony:
    return Ceremony(id_hash=row["id_hash"], purpose=CeremonyPurpose(row["purpose"]),
                    user_id=None if row["user_id"] is None else UserId(row["user_id"]),
                    challenge=b64d(row["challenge"]), state=row["state"],
                    created_at=datetime.fromtimestamp(row["created_at"], UTC),
                    expires_at=datetime.fromtimestamp(row["expires_at"], UTC))


class WebauthnSql(SqlParts):
    """Implements the core's credential and ceremony store on ``SqlParts``."""

    # --- user handles --------------------------------------------------------------------
    async def load_user_handle(self, user_id: UserId) -> bytes | None:
        async with self._timed("load_user_handle", write=False) as tx:
            row = await tx.fetchrow("SELECT user_handle FROM webauthn_users WHERE user_id = $1", user_id)
        return None if row is None else b64d(row["user_handle"])

    async def ensure_user_handle(self, user_id: UserId, candidate: bytes) -> bytes:
        async with self._timed("ensure_user_handle", write=True) as tx:
            await tx.execute("INSERT INTO webauthn_users (user_id, user_handle) VALUES ($1, $2) "
                             "ON CONFLICT (user_id) DO NOTHING", user_id, b64e(candidate))
            row = await tx.fetchrow("SELECT user_handle FROM webauthn_users WHERE user_id = $1", user_id)
        assert row is not None
        return b64d(row["user_handle"])

    async def load_user_by_handle(self, handle: bytes) -> UserId | None:
        async with self._timed("load_user_by_handle", write=False) as tx:
            row = await tx.fetchrow("SELECT user_id FROM webauthn_users WHERE user_handle = $1", b64e(handle))
        return None if row is None else UserId(row["user_id"])

    # --- credentials -----------------------------------------------------------------------
    async def load_credentials(self, user_id: UserId) -> list[StoredCredential]:
        async with self._timed("load_credentials", write=False) as tx:
            rows = await tx.fetch(f"SELECT {_CREDENTIAL_COLUMNS} FROM webauthn_credentials c "
                                  "JOIN devices d ON d.id = c.device_id "
                                  "WHERE c.user_id = $1 AND d.state = 'active' ORDER BY c.device_id", user_id)
        return [_credential_from(r) for r in rows]

    async def load_credential(self, credential_id: bytes) -> StoredCredential | None:
        async with self._timed("load_credential", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_CREDENTIAL_COLUMNS} FROM webauthn_credentials c "
                                    "JOIN devices d ON d.id = c.device_id "
                                    "WHERE c.credential_id = $1 AND d.state = 'active'", b64e(credential_id))
        return None if row is None else _credential_from(row)

    # --- ceremonies ------------------------------------------------------------------------
    async def insert_ceremony(self, ceremony: Ceremony, audit: Sequence[AuditEvent]) -> None:
        async with self._timed("insert_ceremony", write=True) as tx:
            await tx.execute(
                f"INSERT INTO webauthn_ceremonies ({_CEREMONY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (id_hash) DO UPDATE SET purpose = excluded.purpose, user_id = excluded.user_id, "
                "challenge = excluded.challenge, state = excluded.state, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                ceremony.id_hash, ceremony.purpose.value, ceremony.user_id, b64e(ceremony.challenge),
                ceremony.state, ceremony.created_at.timestamp(), ceremony.expires_at.timestamp())
            await self._audit(tx, ceremony.created_at, audit)

    async def load_ceremony(self, id_hash: str) -> Ceremony | None:
        async with self._timed("load_ceremony", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_CEREMONY_COLUMNS} FROM webauthn_ceremonies WHERE id_hash = $1",
                                    id_hash)
        return None if row is None else _ceremony_from(row)

    async def consume_ceremony(self, id_hash: str) -> Ceremony | None:
        async with self._timed("consume_ceremony", write=True) as tx:
            row = await tx.fetchrow(f"DELETE FROM webauthn_ceremonies WHERE id_hash = $1 "
                                    f"RETURNING {_CEREMONY_COLUMNS}", id_hash)
        return None if row is None else _ceremony_from(row)

    async def delete_expired_ceremonies(self, now: datetime) -> int:
        async with self._timed("delete_expired_ceremonies", write=True) as tx:
            rows = await tx.fetch("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1 RETURNING id_hash",
                                  now.timestamp())
        return len(rows)

    # --- binding ---------------------------------------------------------------------------
    async def insert_webauthn_device(self, user_id: UserId, credential: NewCredential, now: datetime,
                                     audit: Callable[[DeviceId], Sequence[AuditEvent]], *,
                                     retire: DeviceId | None = None) -> Device:

        c = credential
        async with self._timed("insert_webauthn_device", write=True) as tx:
            if retire is not None:
                gone = await tx.fetchrow("DELETE FROM devices WHERE id = $1 AND user_id = $2 AND method = 'u2f' "
                                         "RETURNING id", retire, user_id)
                if gone is None:
                    raise PreconditionFailed("the U2F key to upgrade is no longer bound")
            row = await tx.fetchrow(
                "INSERT INTO devices (user_id, method, name, state, created_at, confirmed_at, data) "
                "VALUES ($1, $2, $3, 'active', $4, $4, $5) RETURNING id",
                user_id, c.method.value, c.name, now.timestamp(), c.info.to_json())
            assert row is not None
            device_id = DeviceId(row["id"])
            stored = await tx.fetchrow(
                "INSERT INTO webauthn_credentials (device_id, user_id, credential_id, public_key, sign_count, "
                "app_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING "
                "RETURNING device_id", device_id, user_id, b64e(c.credential_id), b64e(c.public_key),
                c.sign_count, c.app_id)
            if stored is None:
                raise DuplicateCredential()  # rolls the device (and any retirement) back
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit(device_id))
            out = await tx.fetchrow(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1", device_id)
        assert out is not None
        return device_from(out)

    # --- sign-in ---------------------------------------------------------------------------
    async def accept_webauthn(self, device_id: DeviceId, user_id: UserId, sign_count: int, info: WebauthnInfo,
                              now: datetime, challenge_hash: str | None, audit: Sequence[AuditEvent],
                              remember: RememberedDevice | None = None,
                              remember_hash: str | None = None) -> bool:

        committed = False
        async with self._timed("accept_webauthn", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE webauthn_credentials SET sign_count = $2 WHERE device_id = $1 AND user_id = $3 "
                "AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0)) RETURNING device_id",
                device_id, sign_count, user_id)
            if row is None:
                return False
            used = await tx.fetchrow("UPDATE devices SET last_used_at = $2, data = $3 WHERE id = $1 "
                                     "AND state = 'active' RETURNING id", device_id, now.timestamp(),
                                     info.to_json())
            if used is None or (challenge_hash is not None
                                and not await self._consume_challenge(tx, challenge_hash, now)):
                # The transaction swallows Rollback and the code after the block runs:
                # only reaching the end of the block may report an accept.
                raise Rollback()
            await self._after_success(tx, user_id, now, audit, remember, remember_hash)
            committed = True
        return committed
