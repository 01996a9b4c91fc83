"""The store's part for bulk imports (``mfad import``): many users and TOTP devices per
transaction, in a few set-based statements whatever the batch's size.

Mixed into ``SqlStore``. The rows travel as one JSON array parameter per statement
(``json_each`` on SQLite, ``json_array_elements`` on PostgreSQL): a batch of a thousand
records is six statements, not six thousand round trips.

Guarantees (those of creating a user and importing a device one by one):
- the batch is one transaction: its users, devices, sealed secrets and audit rows are
  committed together or not at all; the users already there are locked (PostgreSQL) or the
  database is (SQLite) while the batch decides;
- a user holds one TOTP device: a record for a user who has an active one (or got one
  earlier in the batch) is refused; a pending binding is replaced; the remembered devices
  of an existing user who gets a device are revoked;
- each secret is sealed with the AAD of its own row id (known once the row is inserted)
  before the transaction commits; the plaintext never reaches the database.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from mfad.core.model import AuditEvent, DeviceId, DeviceState, UserId
from mfad.core.ports import ImportOutcome, ImportRow
from mfad.store.sql import SqlParts, Tx

ALREADY_HAS_TOTP = "the user already has a TOTP device: unbind it first"


class BulkImportSql(SqlParts):
    """Implements ``mfad.core.ports.BulkImportStore`` on ``SqlParts``."""

    def _rows(self, n: int) -> str:
        """The JSON array parameter ``$n`` as rows ``j`` with an object ``j.value`` each."""
        return self.sql("json_rows", "json_array_elements(${n}::json) AS j(value)").format(n=n)

    async def import_rows(self, rows: Sequence[ImportRow], now: datetime,
                          seal: Callable[[DeviceId, bytes], str],
                          audit: Callable[[ImportRow, UserId, DeviceId | None, bool], Sequence[AuditEvent]],
                          ) -> list[ImportOutcome]:
        at = now.timestamp()
        async with self._timed("import_rows", write=True) as tx:
            names = sorted({r.username for r in rows})
            users: dict[str, UserId] = {row["username"]: UserId(row["id"]) for row in await tx.fetch(
                f"SELECT id, username FROM users WHERE username IN (SELECT j.value->>'u' FROM {self._rows(1)}) "
                f"ORDER BY id{self.sql('lock', ' FOR UPDATE')}", _json({"u": n} for n in names))}
            before = set(users.values())
            found = await tx.fetch("SELECT id, user_id, state FROM devices WHERE method = 'totp' AND user_id IN "
                                   f"(SELECT CAST(j.value->>'i' AS bigint) FROM {self._rows(1)})",
                                   _json({"i": i} for i in users.values()))
            totp = {UserId(row["user_id"]): (int(row["id"]), str(row["state"])) for row in found}

            # Decide each record in order, as one-by-one imports would have.
            outcomes: list[ImportOutcome] = []
            creating: dict[str, ImportRow] = {}
            gets_device: dict[str, int] = {}  # username → index of the record whose device goes in
            for index, row in enumerate(rows):
                exists = row.username in users or row.username in creating
                if not exists:
                    if not row.create:
                        outcomes.append(ImportOutcome(missing=True))
                        continue
                    creating[row.username] = row
                outcome = ImportOutcome(created=not exists, existed=exists)
                if row.totp is not None:
                    uid = users.get(row.username)
                    active = row.username in gets_device or (
                        uid is not None and uid in totp and totp[uid][1] == DeviceState.ACTIVE)
                    if active:
                        outcome = replace(outcome, refused=ALREADY_HAS_TOTP)
                    else:
                        gets_device[row.username] = index
                outcomes.append(outcome)

            if creating:
                for made in await tx.fetch(
                        "INSERT INTO users (username, password_hash, disabled, created_at, updated_at) "
                        "SELECT j.value->>'u', j.value->>'h', CAST(j.value->>'d' AS integer), $2::float8, $2::float8 "
                        f"FROM {self._rows(1)} WHERE true ON CONFLICT (username) DO NOTHING RETURNING id, username",
                        _json({"u": r.username, "h": r.password_hash, "d": int(r.disabled)} for r in creating.values()),
                        at):
                    users[made["username"]] = UserId(made["id"])
                for index, row in enumerate(rows):  # created meanwhile by another instance
                    if not outcomes[index].missing and row.username not in users:
                        outcomes[index] = ImportOutcome(refused="a concurrent change conflicted with this one; "
                                                        "try again")
                        gets_device.pop(row.username, None)
            devices: dict[UserId, DeviceId] = {}
            if gets_device:
                devices = await self._insert_devices(tx, at, users, rows, gets_device, totp, before, seal)

            events: list[AuditEvent] = []
            for index, (row, outcome) in enumerate(zip(rows, outcomes)):
                if outcome.missing or (outcome.refused is not None and not outcome.created):
                    continue
                uid = users[row.username]
                device = devices.get(uid) if gets_device.get(row.username) == index else None
                events += audit(row, uid, device, outcome.created)
                if device is not None:
                    outcomes[index] = replace(outcome, device=True)
            await self._audit_many(tx, at, events)
        return outcomes

    async def _insert_devices(self, tx: Tx, at: float, users: dict[str, UserId], rows: Sequence[ImportRow],
                              gets_device: dict[str, int], totp: dict[UserId, tuple[int, str]],
                              before: set[UserId], seal: Callable[[DeviceId, bytes], str]) -> dict[UserId, DeviceId]:
        owners = {users[name]: rows[index] for name, index in gets_device.items()}
        pending = [totp[uid][0] for uid in owners if uid in totp]
        if pending:
            await tx.execute(f"DELETE FROM devices WHERE id IN (SELECT CAST(j.value->>'i' AS bigint) "
                             f"FROM {self._rows(1)})", _json({"i": i} for i in pending))
        existing = [uid for uid in owners if uid in before]
        devices = {UserId(r["user_id"]): DeviceId(r["id"]) for r in await tx.fetch(
            "INSERT INTO devices (user_id, method, name, state, created_at, confirmed_at, digits, period, algorithm) "
            "SELECT CAST(j.value->>'u' AS bigint), 'totp', j.value->>'n', 'active', $2::float8, $2::float8, "
            "CAST(j.value->>'g' AS integer), CAST(j.value->>'p' AS integer), j.value->>'a' "
            f"FROM {self._rows(1)} RETURNING id, user_id",
            _json({"u": uid, "n": row.totp.name, "g": row.totp.params.digits, "p": row.totp.params.period,
                   "a": row.totp.params.algorithm.value} for uid, row in owners.items() if row.totp), at)}
        # The AAD binds each ciphertext to its row id, known only after the insert.
        await tx.execute(
            "UPDATE devices SET sealed_secret = j.value->>'s' "
            f"FROM {self._rows(1)} WHERE devices.id = CAST(j.value->>'i' AS bigint)",
            _json({"i": device, "s": seal(device, owners[uid].totp.secret)}  # type: ignore[union-attr]
                  for uid, device in devices.items()))
        if existing:
            await tx.execute("DELETE FROM remembered WHERE user_id IN (SELECT CAST(j.value->>'i' AS bigint) "
                             f"FROM {self._rows(1)})", _json({"i": uid} for uid in existing))
        return devices

    async def _audit_many(self, tx: Tx, at: float, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        await tx.execute(
            "INSERT INTO audit (at, event, outcome, user_id, username, method, protocol, source, reason, actor, "
            "detail) SELECT $2::float8, j.value->>'e', j.value->>'o', CAST(j.value->>'i' AS bigint), j.value->>'u', "
            "j.value->>'m', j.value->>'p', j.value->>'s', j.value->>'r', j.value->>'a', j.value->>'d' "
            f"FROM {self._rows(1)}",
            _json({"e": e.event, "o": e.outcome, "i": e.user_id, "u": e.username, "m": e.method, "p": e.protocol,
                   "s": e.source, "r": e.reason, "a": e.actor, "d": e.detail} for e in events), at)


def _json(items: Iterable[dict[str, Any]]) -> str:
    return json.dumps(list(items), separators=(",", ":"))
