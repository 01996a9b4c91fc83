"""The store's part for the "an approval is waiting" mail (``mfad.core.approval_notice``),
mixed into SqlStore; the SQL is shared by both engines.

Guarantee: the per-user interval is taken by one conditional upsert (``ON CONFLICT … DO
UPDATE … WHERE queued_at < cutoff RETURNING``): of instances racing for the same user,
exactly one gets the row and queues the mail, in the same transaction as the outbox row
and its audit row; the others write nothing.
"""

from __future__ import annotations

from datetime import datetime

from mfad.core.model import UserId
from mfad.core.ports import ApprovalNotice
from mfad.store.sql import SqlParts, Tx


class ApprovalNoticeSql(SqlParts):
    async def queue_approval_notice(self, user_id: UserId, now: datetime, last_before: datetime,
                                    notice: ApprovalNotice) -> int | None:
        at = now.timestamp()
        async with self._timed("queue_approval_notice", write=True) as tx:
            taken = await tx.fetchrow(
                "INSERT INTO approval_notices (user_id, queued_at) VALUES ($1, $2) ON CONFLICT (user_id) "
                "DO UPDATE SET queued_at = excluded.queued_at WHERE approval_notices.queued_at < $3 "
                "RETURNING user_id", user_id, at, last_before.timestamp())
            if taken is None:
                return None
            return await self._insert_outbox_notice(tx, user_id, now, notice)

    async def queue_notice(self, user_id: UserId, now: datetime, notice: ApprovalNotice) -> int:
        async with self._timed("queue_notice", write=True) as tx:
            return await self._insert_outbox_notice(tx, user_id, now, notice)

    async def _insert_outbox_notice(self, tx: Tx, user_id: UserId, now: datetime, notice: ApprovalNotice) -> int:
        return await self._queue_notice_mail(tx, user_id, now, notice.expires_at, notice.seal, notice.audit)
