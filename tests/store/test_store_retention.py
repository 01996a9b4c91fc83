"""Pruning over both engines: only rows that change nothing go, in bounded batches
(mfad.core.retention), and a backlog drains over rounds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mfad.config import LimitSettings
from mfad.core.model import AuditEvent, Challenge, Method
from mfad.core.retention import Retention
from mfad.core.verification import Attempt, Reason
from signin_calls import verify_code


async def test_a_round_removes_full_buckets_old_challenges_and_audit_past_retention(
        mfa: Any, enrol: Any, clock: Any, db: Any) -> None:
    alice = await enrol("alice")
    now = clock.now()
    for i in range(3):  # three sources, each bucket drained once
        await verify_code(mfa.signin, "alice", next(alice.wrong_codes()), Attempt(protocol="t", source=f"s{i}"))
    await mfa.store.insert_challenge(Challenge(
        id_hash="old", user_id=alice.user.id, purpose="signin", methods=frozenset({Method.TOTP}),
        created_at=now - timedelta(hours=3), expires_at=now - timedelta(hours=2), tries_left=3,
        source=None, protocol="t"), [])
    await mfa.store.append_audit(now - timedelta(days=400), [AuditEvent(event="old", outcome="ok")])
    audit_rows = await db.scalar("SELECT count(*) FROM audit")
    rules = Retention(store=mfa.store, clock=clock, limits=LimitSettings(), audit_retention_days=365)

    clock.advance(29)  # burst 60 at 2/s: full again 30 s after the last drain
    assert await rules.prune() == {"source_buckets": 0, "challenges": 1, "audit": 1}
    assert await db.scalar("SELECT count(*) FROM source_buckets") == 3
    clock.advance(1)
    assert (await rules.prune())["source_buckets"] == 3
    assert await db.scalar("SELECT count(*) FROM source_buckets") == 0
    assert await db.scalar("SELECT count(*) FROM audit") == audit_rows - 1
    # A bucket that is gone is a full one: the next failure from that source starts at the burst.
    await verify_code(mfa.signin, "alice", next(alice.wrong_codes()), Attempt(protocol="t", source="s0"))
    assert await db.scalar("SELECT tokens FROM source_buckets") == 59
    assert (await verify_code(mfa.signin, "alice", alice.code(), Attempt(protocol="t", source="s0"))).reason \
        is Reason.ACCEPTED


async def test_a_backlog_drains_in_bounded_batches(store: Any, clock: Any, db: Any) -> None:
    now = clock.now()
    await store.append_audit(now - timedelta(days=30), [AuditEvent(event="e", outcome="ok")] * 50)
    await store.append_audit(now, [AuditEvent(event="e", outcome="ok")] * 5)
    # Small batches, so that the backlog spans rounds: 3 batches of 7 rows at most per round.
    rules = Retention(store=store, clock=clock, limits=LimitSettings(), audit_retention_days=7, batch=7,
                      max_batches=3)
    assert [(await rules.prune())["audit"] for _ in range(4)] == [21, 21, 8, 0]
    assert await db.scalar("SELECT count(*) FROM audit") == 5
