"""Caller tokens stored hashed; audit rows live and die with the change they record.

Over both store engines. The faults here are real: a constraint the database enforces,
a key file corrupted under a running keyring, a callback that raises inside the
transaction — nothing is mocked.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from mfad.core.errors import AlreadyExists, InvalidInput, NotFound
from mfad.core.model import AuditEvent, Challenge, LimitState, Method, RememberedDevice, Role
from mfad.core.ports import AuditFilter, LimitChange
from mfad.core.service import Mfa

#: What each engine raises when a NOT NULL constraint is broken.
CONSTRAINT_ERRORS = (sqlite3.IntegrityError, asyncpg.exceptions.NotNullViolationError)

#: An audit event the database refuses (``event`` is NOT NULL): a fault at the very end
#: of a transaction, after the change it records was made.
BROKEN_AUDIT = AuditEvent(event=None, outcome="ok")  # type: ignore[arg-type]


# --- caller tokens -------------------------------------------------------------------------------
async def test_caller_tokens_are_stored_hashed(mfa: Mfa, db: Any) -> None:
    caller, token = await mfa.callers.create("vpn-gateway", Role.SERVICE, actor="ops")
    assert token.startswith("mfad_") and len(token) >= 40
    assert (caller.name, caller.role, caller.revoked) == ("vpn-gateway", Role.SERVICE, False)
    rows = [tuple(r) for r in await db.rows("SELECT * FROM caller_tokens")]
    assert token not in repr(rows) and token.removeprefix("mfad_") not in repr(rows)
    assert hashlib.sha256(token.encode()).hexdigest() in repr(rows)
    audit = [tuple(r) for r in await db.rows("SELECT * FROM audit")]
    assert token not in repr(audit)

    assert await mfa.callers.authenticate(token) == caller
    for wrong in (token + "x", token[:-1], "mfad_" + "A" * 43, token.removeprefix("mfad_"), "", "mfad_" + "x" * 200):
        assert await mfa.callers.authenticate(wrong) is None
    assert [c.name for c in await mfa.callers.list()] == ["vpn-gateway"]


async def test_caller_tokens_may_expire(mfa: Mfa, clock: Any, db: Any) -> None:
    expires = clock.now() + timedelta(days=1)
    caller, token = await mfa.callers.create("batch-job", Role.SERVICE, actor="ops", expires_at=expires)
    _, forever = await mfa.callers.create("vpn-gateway", Role.SERVICE, actor="ops")
    assert caller.expires_at == expires and await mfa.callers.authenticate(token) == caller
    assert [(c.name, c.expires_at) for c in await mfa.callers.list()] == [("batch-job", expires),
                                                                         ("vpn-gateway", None)]
    clock.advance(86400 - 1)
    assert await mfa.callers.authenticate(token) == caller
    clock.advance(1)
    assert await mfa.callers.authenticate(token) is None
    assert (await mfa.callers.authenticate(forever)) is not None
    assert await db.scalar("SELECT detail FROM audit WHERE event = 'token_created' ORDER BY id LIMIT 1") == (
        f"name=batch-job role=service expires={expires.isoformat()}")
    for past in (clock.now(), clock.now() - timedelta(seconds=1)):
        with pytest.raises(InvalidInput, match="expires_at: must be in the future"):
            await mfa.callers.create("late", Role.SERVICE, actor="ops", expires_at=past)


async def test_caller_tokens_can_be_revoked_and_replaced(mfa: Mfa) -> None:
    _, token = await mfa.callers.create("portal", Role.PORTAL, actor="ops")
    with pytest.raises(AlreadyExists):
        await mfa.callers.create("portal", Role.ADMIN, actor="ops")
    await mfa.callers.revoke("portal", actor="ops")
    assert await mfa.callers.authenticate(token) is None
    with pytest.raises(NotFound):
        await mfa.callers.revoke("portal", actor="ops")
    replacement, new_token = await mfa.callers.create("portal", Role.ADMIN, actor="ops")
    assert replacement.role is Role.ADMIN and await mfa.callers.authenticate(new_token) == replacement
    assert await mfa.callers.authenticate(token) is None
    events = [(r.event.event, r.event.actor) for r in reversed(await mfa.audit(AuditFilter(limit=10)))
              if r.event.event.startswith("token_")]
    assert events == [("token_created", "ops"), ("token_revoked", "ops"), ("token_created", "ops")]


@pytest.mark.parametrize("name", ["", "x" * 101, "tab\tname", "new\nline"])
async def test_bad_caller_names_are_refused(mfa: Mfa, db: Any, name: str) -> None:
    before = await db.counts()
    with pytest.raises(InvalidInput):
        await mfa.callers.create(name, Role.SERVICE)
    assert await db.counts() == before


# --- audit rows share the transaction of their change -------------------------------------------
async def test_failed_audit_row_undoes_a_password_change(mfa: Mfa, enrol: Any, db: Any, clock: Any) -> None:
    alice = await enrol("alice")
    before_hash = (await mfa.store.load_user(alice.user.id)).password_hash  # type: ignore[union-attr]
    before = await db.counts()
    with pytest.raises(CONSTRAINT_ERRORS):
        await mfa.store.update_password(alice.user.id, "other-hash", clock.now(), [BROKEN_AUDIT])
    assert (await mfa.store.load_user(alice.user.id)).password_hash == before_hash  # type: ignore[union-attr]
    assert await db.counts() == before


async def test_failed_audit_row_undoes_an_accept(mfa: Mfa, enrol: Any, db: Any, clock: Any) -> None:
    """The replay guard, the challenge, the counters and the remembered device move
    together with the audit row, or not at all."""
    alice = await enrol("alice")
    now = clock.now()
    challenge = Challenge(id_hash="a" * 64, user_id=alice.user.id, purpose="signin",
                          methods=frozenset({Method.TOTP}), created_at=now, expires_at=now + timedelta(minutes=5),
                          tries_left=3, source=None, protocol="test")
    await mfa.store.insert_challenge(challenge, [])
    await mfa.store.record_failure(alice.user.id, None, now, lambda s: LimitChange(
        state=LimitState(failures=3, total_failures=3)), None, None, [])
    remember = RememberedDevice(series="s", user_id=alice.user.id, label="x", created_at=now,
                                expires_at=now + timedelta(days=1), last_used_at=None)
    before = await db.counts()
    with pytest.raises(CONSTRAINT_ERRORS):
        await mfa.store.accept_totp(alice.device.id, alice.user.id, alice.step(1), 1, now, challenge.id_hash,
                                    [BROKEN_AUDIT], remember, "hash")
    assert await db.counts() == before
    assert (await mfa.store.load_device(alice.device.id)).last_step == alice.step()  # type: ignore[union-attr]
    assert not (await mfa.store.load_challenge(challenge.id_hash)).consumed  # type: ignore[union-attr]
    assert (await mfa.store.load_limits(alice.user.id)).failures == 3
    # The same accept with a good audit row goes through.
    assert await mfa.store.accept_totp(alice.device.id, alice.user.id, alice.step(1), 1, now, challenge.id_hash,
                                       [AuditEvent(event="verify", outcome="accepted")], remember, "hash")


async def test_failure_inside_record_failure_leaves_no_trace(mfa: Mfa, enrol: Any, db: Any, clock: Any) -> None:
    alice = await enrol("alice")
    now = clock.now()
    challenge = Challenge(id_hash="b" * 64, user_id=alice.user.id, purpose="signin",
                          methods=frozenset({Method.TOTP}), created_at=now, expires_at=now + timedelta(minutes=5),
                          tries_left=3, source="10.0.0.1", protocol="test")
    await mfa.store.insert_challenge(challenge, [])
    before = await db.counts()

    def change(state: LimitState) -> LimitChange:
        raise RuntimeError("fault while computing the new counters")

    with pytest.raises(RuntimeError):
        await mfa.store.record_failure(alice.user.id, "10.0.0.1", now, change, lambda t, u: 5.0, challenge.id_hash,
                                       [AuditEvent(event="verify", outcome="refused")])
    assert await db.counts() == before  # no audit row, no bucket, no counters
    assert (await mfa.store.load_challenge(challenge.id_hash)).tries_left == 3  # type: ignore[union-attr]


async def test_failed_audit_row_undoes_a_new_user(mfa: Mfa, db: Any, clock: Any) -> None:
    before = await db.counts()

    def audit(user_id: Any) -> list[AuditEvent]:
        raise RuntimeError("fault after the insert")

    with pytest.raises(RuntimeError):
        await mfa.store.create_user("alice", None, clock.now(), audit)
    assert await db.counts() == before
    assert await mfa.store.load_user_by_name("alice") is None


async def test_failed_audit_row_undoes_a_policy_change(mfa: Mfa, db: Any, clock: Any) -> None:
    before_policy = await mfa.store.load_policy()
    assert before_policy is not None
    before = await db.counts()
    with pytest.raises(CONSTRAINT_ERRORS):
        await mfa.store.save_policy(type(before_policy)(remember_days=30), clock.now(), [BROKEN_AUDIT])
    assert await mfa.store.load_policy() == before_policy
    assert await db.counts() == before


async def test_user_administration_is_audited(mfa: Mfa, password: str) -> None:
    await mfa.users.create("alice", password, actor="ops")
    await mfa.users.set_password("alice", "another password", actor="ops")
    await mfa.users.set_password("alice", None, actor="ops")
    await mfa.users.set_disabled("alice", True, actor="ops")
    await mfa.users.set_disabled("alice", False, actor="ops")
    rows = [(r.event.event, r.event.outcome, r.event.actor, r.event.username)
            for r in reversed(await mfa.audit(AuditFilter(limit=100))) if r.event.event != "policy_changed"]
    assert rows == [("user_created", "ok", "ops", "alice"), ("password_set", "ok", "ops", "alice"),
                    ("password_set", "cleared", "ops", "alice"), ("user_disabled", "ok", "ops", "alice"),
                    ("user_enabled", "ok", "ops", "alice")]
    assert len(await mfa.audit_for("alice", AuditFilter())) == 5
    with pytest.raises(NotFound):
        await mfa.audit_for("nobody", AuditFilter())
