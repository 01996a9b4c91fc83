"""The store's part for one-time enrolment codes (``mfad.core.ports.EnrolmentCodeStore``).

Mixed into ``SqlStore``; the SQL is shared by both engines (``$n`` parameters).

Guarantees:
- a user holds at most one code (``user_id`` is unique): issuing deletes the old row
  and inserts the new one, with its MAC and audit rows, in one transaction;
- a try is spent by ``UPDATE … WHERE tries_left > 0 … RETURNING`` *before* the
  comparison, so parallel guesses cannot exceed the tries; a match is marked used by
  a conditional update, so of two instances racing with one code exactly one wins,
  and the win clears the enrolment session's owed proof in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mfad.core.model import AuditEvent, UserId
from mfad.core.ports import EnrolmentCheck, EnrolmentCode
from mfad.store.sql import Rollback, SqlParts, dt, dt_req

_COLUMNS = "id, created_at, expires_at, tries_left, issued_by, used_at"


def _code_from(row: Any) -> EnrolmentCode:
    return EnrolmentCode(id=int(row["id"]), created_at=dt_req(row["created_at"]),
                         expires_at=dt_req(row["expires_at"]), tries_left=int(row["tries_left"]),
                         issued_by=row["issued_by"], used_at=dt(row["used_at"]))


class EnrolmentSql(SqlParts):
    """Implements ``mfad.core.ports.EnrolmentCodeStore`` on ``SqlParts``."""

    async def replace_enrolment_code(self, user_id: UserId, now: datetime, expires_at: datetime, tries: int,
                                     issued_by: str | None, mac: Callable[[int], str],
                                     audit: Callable[[EnrolmentCode | None], Sequence[AuditEvent]]) -> EnrolmentCode:
        async with self._timed("replace_enrolment_code", write=True) as tx:
            old = await tx.fetchrow(f"DELETE FROM enrolment_codes WHERE user_id = $1 RETURNING {_COLUMNS}", user_id)
            row = await tx.fetchrow(
                "INSERT INTO enrolment_codes (user_id, created_at, expires_at, tries_left, issued_by) "
                f"VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}", user_id, now.timestamp(),
                expires_at.timestamp(), tries, issued_by)
            assert row is not None
            # The MAC binds to the row id, known only after the insert.
            await tx.execute("UPDATE enrolment_codes SET code_mac = $2 WHERE id = $1", row["id"],
                             mac(int(row["id"])))
            await self._audit(tx, now, audit(None if old is None else _code_from(old)))
        return _code_from(row)

    async def load_enrolment_code(self, user_id: UserId) -> EnrolmentCode | None:
        async with self._timed("load_enrolment_code", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM enrolment_codes WHERE user_id = $1", user_id)
        return None if row is None else _code_from(row)

    async def accept_enrolment_code(self, user_id: UserId, session_hash: str, now: datetime,
                                    matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                    refusal_audit: Callable[[EnrolmentCheck], Sequence[AuditEvent]]) -> EnrolmentCheck:
        at = now.timestamp()
        check = EnrolmentCheck.SESSION_GONE
        async with self._timed("accept_enrolment_code", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE enrolment_codes SET tries_left = tries_left - 1 WHERE user_id = $1 AND used_at IS NULL "
                "AND expires_at > $2 AND tries_left > 0 RETURNING id, code_mac", user_id, at)
            if row is None:
                await self._audit(tx, now, refusal_audit(EnrolmentCheck.NO_CODE))
                return EnrolmentCheck.NO_CODE
            if not matches(int(row["id"]), row["code_mac"]):
                await self._audit(tx, now, refusal_audit(EnrolmentCheck.WRONG))
                return EnrolmentCheck.WRONG
            used = await tx.fetchrow("UPDATE enrolment_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL "
                                     "RETURNING id", row["id"], at)
            if used is None:
                await self._audit(tx, now, refusal_audit(EnrolmentCheck.NO_CODE))
                return EnrolmentCheck.NO_CODE
            proved = await tx.fetchrow("UPDATE user_sessions SET proof_owed = NULL WHERE id_hash = $1 "
                                       "AND user_id = $2 AND expires_at > $3 RETURNING id_hash",
                                       session_hash, user_id, at)
            if proved is None:
                raise Rollback()  # the session ended meanwhile: the code stays unused
            await self._audit(tx, now, audit)
            check = EnrolmentCheck.ACCEPTED
        return check
