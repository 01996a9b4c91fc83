"""The store's part for recovery codes.

Mixed into ``SqlStore``; the SQL is shared by both engines (``$n`` parameters).

Guarantees:
- replacing a set (the user's row locked, the old set and all its codes deleted,
  the new codes inserted with their MACs, remembered devices revoked, the audit
  rows written) is one transaction: a user never holds two sets, nor half of one;
- a code is used once: a match is marked by ``UPDATE … WHERE used_at IS NULL
  RETURNING``, so of two instances racing with one code exactly one wins; the
  win is committed in the same transaction as everything the success changes
  (challenge, counters, remembered device, audit, the notice in the outbox).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from mfad.core.model import AuditEvent, Device, RememberedDevice, UserId
from mfad.core.ports import RecoveryCheck, RecoveryNotice, RecoverySet
from mfad.store.sql import DEVICE_COLUMNS, Rollback, SqlParts, Tx, device_from, dt, dt_req

#: The name of a set's devices row (a set is not named by its user).
SET_NAME = "recovery codes"


class RecoverySql(SqlParts):
    """Implements ``mfad.core.ports.RecoveryStore`` on ``SqlParts``."""

    async def replace_recovery_codes(self, user_id: UserId, count: int, now: datetime,
                                     mac: Callable[[int], str], audit: Sequence[AuditEvent]) -> Device:
        at = now.timestamp()
        async with self._timed("replace_recovery_codes", write=True) as tx:
            # Serialises replacements per user across instances (PostgreSQL; SQLite holds the db lock).
            await tx.execute(f"SELECT id FROM users WHERE id = $1{self.sql('lock', ' FOR UPDATE')}", user_id)
            await tx.execute("DELETE FROM devices WHERE user_id = $1 AND method = 'recovery'", user_id)
            row = await tx.fetchrow(
                "INSERT INTO devices (user_id, method, name, state, created_at, confirmed_at) "
                f"VALUES ($1, 'recovery', $2, 'active', $3, $3) RETURNING {DEVICE_COLUMNS}", user_id, SET_NAME, at)
            assert row is not None
            device = device_from(row)
            for _ in range(count):
                code = await tx.fetchrow("INSERT INTO recovery_codes (device_id) VALUES ($1) RETURNING id", device.id)
                assert code is not None
                # The MAC binds to the row id, known only after the insert.
                await tx.execute("UPDATE recovery_codes SET code_mac = $2 WHERE id = $1", code["id"],
                                 mac(int(code["id"])))
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit)
        return device

    async def load_recovery_set(self, user_id: UserId) -> RecoverySet | None:
        async with self._timed("load_recovery_set", write=False) as tx:
            row = await tx.fetchrow(
                "SELECT d.created_at, d.last_used_at, count(c.id) AS left_ FROM devices d "
                "LEFT JOIN recovery_codes c ON c.device_id = d.id AND c.used_at IS NULL "
                "WHERE d.user_id = $1 AND d.method = 'recovery' GROUP BY d.id, d.created_at, d.last_used_at",
                user_id)
        if row is None:
            return None
        return RecoverySet(codes_left=int(row["left_"]), created_at=dt_req(row["created_at"]),
                           last_used_at=dt(row["last_used_at"]))

    async def accept_recovery_code(self, user_id: UserId, now: datetime, matches: Callable[[int, str], bool],
                                   challenge_hash: str | None, audit: Sequence[AuditEvent],
                                   remember: RememberedDevice | None, remember_hash: str | None,
                                   notice: RecoveryNotice | None) -> RecoveryCheck:
        check = RecoveryCheck.CHALLENGE_GONE
        async with self._timed("accept_recovery_code", write=True) as tx:
            rows = await tx.fetch(
                "SELECT c.id, c.code_mac, c.device_id FROM recovery_codes c JOIN devices d ON d.id = c.device_id "
                "WHERE d.user_id = $1 AND d.method = 'recovery' AND c.used_at IS NULL ORDER BY c.id", user_id)
            # Every unused code is compared (no early exit): the time says nothing of which matched.
            found = [r for r in rows if matches(int(r["id"]), r["code_mac"])]
            if not found:
                return RecoveryCheck.WRONG
            hit = found[0]
            used = await tx.fetchrow("UPDATE recovery_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL "
                                     "RETURNING id", hit["id"], now.timestamp())
            if used is None:
                return RecoveryCheck.USED
            if challenge_hash is not None and not await self._consume_challenge(tx, challenge_hash, now):
                raise Rollback()  # another method completed the challenge first: the code stays unused
            left = await self._codes_left(tx, hit["device_id"])
            if left == 0:
                await tx.execute("DELETE FROM devices WHERE id = $1", hit["device_id"])
            else:
                await tx.execute("UPDATE devices SET last_used_at = $2 WHERE id = $1", hit["device_id"],
                                 now.timestamp())
            await self._after_success(tx, user_id, now, audit, remember, remember_hash)
            if notice is not None:
                await self._queue_notice(tx, user_id, now, notice, left)
            check = RecoveryCheck.ACCEPTED
        return check

    @staticmethod
    async def _codes_left(tx: Tx, device_id: int) -> int:
        row = await tx.fetchrow("SELECT count(*) AS n FROM recovery_codes WHERE device_id = $1 AND used_at IS NULL",
                                device_id)
        assert row is not None
        return int(row["n"])

    async def _queue_notice(self, tx: Tx, user_id: UserId, now: datetime, notice: RecoveryNotice, left: int) -> None:
        await self._queue_notice_mail(tx, user_id, now, notice.expires_at,
                                      lambda message_id: notice.seal(message_id, left), notice.audit)
