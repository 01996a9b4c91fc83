"""Pruning: every table that requests can add rows to stays bounded, and the audit trail
is kept for its retention period only.

Guarantees: rows are deleted only once they change nothing — a failure bucket not drained
for as long as it takes to refill is full again, the same as no row; a challenge expired
an hour ago can only be answered "expired" (the hour keeps that answer distinct from
"unknown" for a late NAS); audit rows older than ``retention_days``, NAS session reports
older than their own (shorter) retention. The work runs off the
hot path (the daemon's housekeeping), in batches of ``BATCH`` rows, each its own short
transaction, yielding to the event loop in between, and at most ``MAX_BATCHES`` per table
and round: one round never holds the store for long, and a backlog drains over rounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from mfad.core.accounting import SESSION_EVENT
from mfad.core.clock import Clock
from mfad.core.ports import RetentionStore
from mfad.core.settings import LimitSettings

BATCH = 500
MAX_BATCHES = 20
#: How long an expired challenge is kept so that a late answer is told "expired", not "unknown".
EXPIRED_CHALLENGE_KEPT = timedelta(hours=1)


async def drain(delete_batch: Callable[[int], Awaitable[int]], *, batch: int = BATCH,
                max_batches: int = MAX_BATCHES) -> int:
    """Call ``delete_batch(batch)`` until it deletes less than a batch, at most ``max_batches`` times."""
    removed = 0
    for _ in range(max_batches):
        n = await delete_batch(batch)
        removed += n
        if n < batch:
            break
        await asyncio.sleep(0)  # let requests in between batches
    return removed


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    store: RetentionStore
    clock: Clock
    limits: LimitSettings
    audit_retention_days: int
    #: NAS session reports (``nas_session`` audit rows) are kept this long, at most as long as the audit.
    session_retention_days: int | None = None
    batch: int = BATCH
    max_batches: int = MAX_BATCHES

    def bucket_refill(self) -> timedelta:
        """How long an emptied failure bucket takes to be full again (0 s: buckets are off)."""
        rate = self.limits.source_failure_rate
        return timedelta(seconds=self.limits.source_failure_burst / rate) if rate > 0 else timedelta(0)

    async def prune(self) -> dict[str, int]:
        """One round; rows removed per table."""
        now = self.clock.now()
        store = self.store
        jobs: dict[str, Callable[[int], Awaitable[int]]] = {
            "source_buckets": lambda n: store.delete_full_buckets(now - self.bucket_refill(), n),
            "challenges": lambda n: store.delete_expired_challenges(now - EXPIRED_CHALLENGE_KEPT, n),
            "audit": lambda n: store.delete_audit_before(now - timedelta(days=self.audit_retention_days), n),
        }
        if self.session_retention_days is not None and self.session_retention_days < self.audit_retention_days:
            days = self.session_retention_days
            jobs["session_reports"] = lambda n: store.delete_audit_before(now - timedelta(days=days), n, SESSION_EVENT)
        return {table: await drain(job, batch=self.batch, max_batches=self.max_batches)
                for table, job in jobs.items()}
