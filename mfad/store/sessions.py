"""The store's part for user sessions (``mfad.core.sessions.SessionStore``), mixed into SqlStore.

The SQL is the subset both engines share (``$n`` parameters, ``RETURNING``).
Guarantee: only token hashes are stored; every change writes its audit rows in
the same transaction; a second factor is recorded only on a live session.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mfad.core.model import AuditEvent, EnrolmentProof, StaffRole, UserId
from mfad.core.sessions import SessionNotice, SessionScope, UserSession
from mfad.store.sql import SqlParts, Tx

_COLUMNS = ("s.id_hash, s.user_id, u.username, u.role, s.scope, s.caller, s.created_at, s.expires_at, "
            "s.second_factor_at, s.proof_owed, s.signed_in_with, s.second_factor_with")


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _session_from(row: Any) -> UserSession:
    return UserSession(id_hash=row["id_hash"], user_id=UserId(row["user_id"]), username=row["username"],
                       scope=SessionScope(row["scope"]), caller=row["caller"],
                       created_at=datetime.fromtimestamp(row["created_at"], UTC),
                       expires_at=datetime.fromtimestamp(row["expires_at"], UTC),
                       second_factor_at=_dt(row["second_factor_at"]),
                       role=StaffRole(row["role"]) if row["role"] else None,
                       proof_owed=EnrolmentProof(row["proof_owed"]) if row["proof_owed"] else None,
                       signed_in_with=row["signed_in_with"], second_factor_with=row["second_factor_with"])


class SessionSql(SqlParts):
    """Implements the core's session store on ``SqlParts``."""

    async def insert_session(self, session: UserSession, audit: Sequence[AuditEvent],
                             notice: SessionNotice | None = None) -> None:
        now = session.created_at.timestamp()
        async with self._timed("insert_session", write=True) as tx:
            # The user's dead sessions go now: the table holds live ones plus the janitor's backlog.
            await tx.execute("DELETE FROM user_sessions WHERE user_id = $1 AND expires_at <= $2",
                             session.user_id, now)
            await tx.execute(
                "INSERT INTO user_sessions (id_hash, user_id, scope, caller, created_at, expires_at, "
                "second_factor_at, proof_owed, signed_in_with, second_factor_with) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                session.id_hash, session.user_id, session.scope.value, session.caller, now,
                session.expires_at.timestamp(),
                None if session.second_factor_at is None else session.second_factor_at.timestamp(),
                None if session.proof_owed is None else session.proof_owed.value,
                session.signed_in_with, session.second_factor_with)
            await self._audit(tx, session.created_at, audit)
            if notice is not None:
                await self._queue_notice_mail(tx, notice.user_id, session.created_at, notice.expires_at,
                                              notice.seal, notice.audit)

    async def load_session(self, id_hash: str) -> UserSession | None:
        async with self._timed("load_session", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM user_sessions s JOIN users u ON u.id = s.user_id "
                                    "WHERE s.id_hash = $1", id_hash)
        return None if row is None else _session_from(row)

    async def update_session_second_factor(self, id_hash: str, at: datetime, audit: Sequence[AuditEvent],
                                           method: str | None = None) -> bool:
        async with self._timed("update_session", write=True) as tx:
            row = await tx.fetchrow("UPDATE user_sessions SET second_factor_at = $2, second_factor_with = $3 "
                                    "WHERE id_hash = $1 AND expires_at > $2 RETURNING id_hash",
                                    id_hash, at.timestamp(), method)
            if row is None:
                return False
            await self._audit(tx, at, audit)
        return True

    async def delete_session(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> bool:
        async with self._timed("delete_session", write=True) as tx:
            row = await tx.fetchrow("DELETE FROM user_sessions WHERE id_hash = $1 RETURNING id_hash", id_hash)
            if row is not None:
                await self._audit(tx, now, audit)
        return row is not None

    async def delete_sessions(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> int:
        async with self._timed("delete_sessions", write=True) as tx:
            count = await self._delete_user_sessions(tx, user_id)
            await self._audit(tx, now, audit)
        return count

    @staticmethod
    async def _delete_user_sessions(tx: Tx, user_id: UserId) -> int:
        """Inside another change's transaction (password set, user disabled)."""
        rows = await tx.fetch("DELETE FROM user_sessions WHERE user_id = $1 RETURNING id_hash", user_id)
        return len(rows)

    async def delete_expired_sessions(self, now: datetime) -> int:
        async with self._timed("delete_expired_sessions", write=True) as tx:
            rows = await tx.fetch("DELETE FROM user_sessions WHERE expires_at <= $1 RETURNING id_hash",
                                  now.timestamp())
        return len(rows)
