"""The store's part for pending approvals (``mfad.core.approval_records.ApprovalStore``),
mixed into SqlStore; the SQL is shared by both engines (``$n`` parameters).

Guarantees:
- one approval per user: ``user_id`` is the key and a new approval overwrites the row;
- every move is ``UPDATE … WHERE state = <the state it leaves> AND expires_at > now
  RETURNING``, so a decision is taken once and a used approval is never used again;
- refusing an approval consumes its challenge and taking one consumes it too, in the same
  transaction as the move, the counters and the audit rows;
- a decision is announced (``mfad.core.approval_waits.DecisionFeed``) only once committed:
  inside the deciding transaction for other instances (PostgreSQL ``NOTIFY``, delivered at
  commit), and to this process's listeners after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
import logging
from typing import Any

from mfad.core.approval_records import Approval, ApprovalState, DecisionListener
from mfad.core.model import AuditEvent, RememberedDevice, UserId
from mfad.store.sql import Rollback, SqlParts, dt, dt_req

log = logging.getLogger("mfad.store")

#: An approval is open while pending, unexpired and its sign-in not finished another way
#: (a TOTP code typed at the same prompt consumed the challenge).
def _open(now: str) -> str:
    return (f"state = 'pending' AND expires_at > {now} AND EXISTS (SELECT 1 FROM challenges c "
            "WHERE c.id_hash = approvals.challenge_hash AND c.consumed = 0)")
_COLUMNS = ("id, user_id, challenge_hash, number, client, source, protocol, created_at, expires_at, state, "
            "decided_at, held")


def _approval_from(row: Any) -> Approval:
    return Approval(id=row["id"], user_id=UserId(row["user_id"]), challenge_hash=row["challenge_hash"],
                    number=int(row["number"]), client=row["client"], source=row["source"],
                    protocol=row["protocol"], created_at=dt_req(row["created_at"]),
                    expires_at=dt_req(row["expires_at"]), state=ApprovalState(row["state"]),
                    decided_at=dt(row["decided_at"]), held=bool(row["held"]))


class ApprovalSql(SqlParts):
    async def replace_approval(self, approval: Approval, audit: Sequence[AuditEvent]) -> None:
        a = approval
        async with self._timed("replace_approval", write=True) as tx:
            await tx.execute(
                f"INSERT INTO approvals ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11) "
                "ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, challenge_hash = excluded.challenge_hash, "
                "number = excluded.number, client = excluded.client, source = excluded.source, "
                "protocol = excluded.protocol, created_at = excluded.created_at, expires_at = excluded.expires_at, "
                "state = excluded.state, decided_at = NULL, held = excluded.held",
                a.id, a.user_id, a.challenge_hash, a.number, a.client, a.source, a.protocol,
                a.created_at.timestamp(), a.expires_at.timestamp(), a.state.value, int(a.held))
            await self._audit(tx, a.created_at, audit)

    async def load_approval(self, approval_id: str) -> Approval | None:
        async with self._timed("load_approval", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM approvals WHERE id = $1", approval_id)
        return None if row is None else _approval_from(row)

    async def load_approval_for_challenge(self, challenge_hash: str) -> Approval | None:
        async with self._timed("load_approval_for_challenge", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM approvals WHERE challenge_hash = $1", challenge_hash)
        return None if row is None else _approval_from(row)

    async def list_open_approvals(self, user_id: UserId, now: datetime) -> list[Approval]:
        async with self._timed("list_open_approvals", write=False) as tx:
            rows = await tx.fetch(f"SELECT {_COLUMNS} FROM approvals WHERE user_id = $1 AND {_open('$2')} "
                                  "ORDER BY created_at", user_id, now.timestamp())
        return [_approval_from(r) for r in rows]

    async def count_open_approvals(self, now: datetime) -> int:
        async with self._timed("count_open_approvals", write=False) as tx:
            row = await tx.fetchrow(f"SELECT count(*) AS n FROM approvals WHERE {_open('$1')}", now.timestamp())
        return int(row["n"]) if row else 0

    async def decide_approval(self, approval_id: str, user_id: UserId, now: datetime, state: ApprovalState,
                              audit: Sequence[AuditEvent]) -> bool:
        assert state in (ApprovalState.APPROVED, ApprovalState.REFUSED)
        decided = False
        async with self._timed("decide_approval", write=True) as tx:
            row = await tx.fetchrow(
                f"UPDATE approvals SET state = $4, decided_at = $2 WHERE id = $1 AND user_id = $3 AND {_open('$2')} "
                "RETURNING challenge_hash", approval_id, now.timestamp(), user_id, state.value)
            if row is None:
                return False
            if state is ApprovalState.REFUSED:
                await tx.execute("UPDATE challenges SET consumed = 1 WHERE id_hash = $1", row["challenge_hash"])
            await self._audit(tx, now, audit)
            await self._announce_decision(tx, row["challenge_hash"])
            decided = True
        if decided:
            self._decision_committed(row["challenge_hash"])
        return decided

    async def accept_approval(self, challenge_hash: str, user_id: UserId, now: datetime,
                              audit: Sequence[AuditEvent], remember: RememberedDevice | None,
                              remember_hash: str | None) -> bool:
        committed = False
        async with self._timed("accept_approval", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE approvals SET state = 'used' WHERE challenge_hash = $1 AND user_id = $2 "
                "AND state = 'approved' AND expires_at > $3 RETURNING id", challenge_hash, user_id, now.timestamp())
            if row is None:
                return False
            if not await self._consume_challenge(tx, challenge_hash, now):
                raise Rollback()  # another method completed the sign-in first
            await self._after_success(tx, user_id, now, audit, remember, remember_hash)
            committed = True
        return committed

    async def update_hard_lock(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> None:
        """Lock the user until an administrator resets the lock-out (the user asked for it)."""
        async with self._timed("update_hard_lock", write=True) as tx:
            await tx.execute("INSERT INTO user_limits (user_id, updated_at) VALUES ($1, $2) "
                             "ON CONFLICT (user_id) DO NOTHING", user_id, now.timestamp())
            await tx.execute("UPDATE user_limits SET hard_locked = 1, updated_at = $2 WHERE user_id = $1",
                             user_id, now.timestamp())
            await self._audit(tx, now, audit)

    # --- telling waiters ------------------------------------------------------------------
    def listen_decisions(self, listener: DecisionListener) -> None:
        """``mfad.core.approval_waits.DecisionFeed``: ``listener`` hears of every decision
        committed by this process, and (PostgreSQL) by every other instance."""
        listeners: list[DecisionListener] | None = getattr(self, "_decision_listeners", None)
        if listeners is None:
            listeners = []
            self._decision_listeners = listeners
        listeners.append(listener)
        self._start_decision_feed()

    def _start_decision_feed(self) -> None:
        """Engines that hear other instances' decisions start listening here (PostgreSQL)."""

    async def _announce_decision(self, tx: Any, challenge_hash: str) -> None:
        """Inside the deciding transaction: tell other instances (PostgreSQL NOTIFY)."""

    def _decision_committed(self, challenge_hash: str | None) -> None:
        """After the commit (or from another instance's notice): wake this process's waiters.
        None: decisions may have been missed, every waiter looks again."""
        for listener in tuple(getattr(self, "_decision_listeners", ())):
            try:
                listener(challenge_hash)
            except Exception:  # a listener's bug must not undo a committed decision
                log.exception("approval decision listener failed")
