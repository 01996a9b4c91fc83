"""The store contract, run against both engines (a real SQLite file, a real PostgreSQL).

Migrations, the atomic guards (replay, challenge, remembered-device rotation),
failure counters, and races between two Store instances on one database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from mfad.core.errors import AlreadyExists, NotFound, PreconditionFailed, SchemaError
from mfad.core.model import (
    AuditEvent,
    Challenge,
    DeviceId,
    LimitState,
    Method,
    MfaRequired,
    Policy,
    RememberedDevice,
    Role,
    StaffRole,
    TotpParams,
    UserId,
)
from mfad.core.ports import AuditFilter, LimitChange, RequestClaim, Store
from mfad.core.verification import Attempt, Reason
from mfad.store.migrations import latest_version, migrations
from signin_calls import verify_code

Opener = Callable[..., Awaitable[Store]]


def no_audit(_: object) -> list[AuditEvent]:
    return []


def event(name: str, user_id: UserId | None = None, **kw: Any) -> AuditEvent:
    return AuditEvent(event=name, outcome="ok", user_id=user_id, **kw)


async def new_user(store: Store, now: Any, name: str = "alice") -> UserId:
    user = await store.create_user(name, None, now, lambda uid: [event("user_created", uid)])
    return user.id


async def new_active_totp(store: Store, user_id: UserId, now: Any) -> DeviceId:
    device = await store.insert_pending_totp(user_id, "app", TotpParams(), now, now + timedelta(minutes=10),
                                             lambda did: f"kx:sealed-{did}", no_audit)
    assert await store.activate_device(device.id, 100, 0, now, [])
    return device.id


# --- migrations -----------------------------------------------------------------------------
async def test_fresh_database_migrates_to_latest_and_twice_is_a_no_op(store_opener: Opener, engine: str) -> None:
    store = await store_opener()
    assert await store.schema_version() == 0
    versions = [v for v, _ in migrations(engine)]
    assert versions == list(range(1, len(versions) + 1))
    assert await store.migrate() == versions
    assert await store.schema_version() == latest_version(engine) == versions[-1]
    assert await store.migrate() == []
    assert await store.schema_version() == versions[-1]
    # A second instance (another daemon starting) finds nothing to do either.
    other = await store_opener()
    assert await other.migrate() == []


async def test_both_engines_know_the_same_schema_versions() -> None:
    assert [v for v, _ in migrations("sqlite")] == [v for v, _ in migrations("postgres")]


async def test_schema_newer_than_known_is_refused(store: Store, db: Any, engine: str) -> None:
    newer = latest_version(engine) + 1
    if engine == "sqlite":
        await db.execute("INSERT INTO mfad_schema (version, applied_at) VALUES ($1, 0)", newer)
    else:
        await db.execute("INSERT INTO mfad_schema (version) VALUES ($1)", newer)
    assert await store.schema_version() == newer
    with pytest.raises(SchemaError, match="newer"):
        await store.migrate()


async def test_device_ids_are_never_reused(store: Store, clock: Any) -> None:
    """A stale device id (a replaced binding, an unbound device) must never address a new device."""
    now = clock.now()
    uid = await new_user(store, now)
    first = await new_active_totp(store, uid, now)
    assert await store.delete_device(first, uid, now, []) is not None
    second = await new_active_totp(store, uid, now)
    assert second > first
    assert await store.load_device(first) is None


# --- users ------------------------------------------------------------------------------------
async def test_users_round_trip(store: Store, clock: Any) -> None:
    now = clock.now()
    alice = await store.create_user("alice", "argon2-hash", now, no_audit)
    with pytest.raises(AlreadyExists):
        await store.create_user("alice", None, now, no_audit)
    for name in ("bob", "alfred", "carol"):
        await store.create_user(name, None, now, no_audit)
    loaded = await store.load_user_by_name("alice")
    assert loaded == alice and loaded.created_at == now and loaded.created_at.tzinfo is not None
    assert await store.load_user(alice.id) == alice
    assert await store.load_user_by_name("ALICE") is None
    # By username in code point order on both engines (not by id, not by the database's locale).
    for name in ("Zoe", "émile", "al-x", "alfa"):
        await store.create_user(name, None, now, no_audit)
    ordered = ["Zoe", "al-x", "alfa", "alfred", "alice", "bob", "carol", "émile"]
    assert [u.username for u in await store.list_users(None, 20)] == ordered
    assert [u.username for u in await store.list_users(None, 10, "al")] == ["al-x", "alfa", "alfred", "alice"]
    paged, after = [], None
    while page := await store.list_users(after, 3):
        paged += [u.username for u in page]
        after = page[-1].username
    assert paged == ordered
    assert [u.username for u in await store.list_users("alfa", 2, "al")] == ["alfred", "alice"]
    await store.update_user_disabled(alice.id, True, now, [])
    assert (await store.load_user(alice.id)).disabled  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await store.update_password(UserId(999), "x", now, [])


async def test_a_console_role_is_stored_audited_and_read_with_the_user_and_subject(store: Store, clock: Any,
                                                                                 db: Any) -> None:
    now = clock.now()
    alice = await store.create_user("alice", None, now, no_audit)
    assert alice.role is None
    given = await store.update_user_role(alice.id, StaffRole.HELPDESK, now, [event("role_set", alice.id)])
    assert given.role is StaffRole.HELPDESK and given == await store.load_user(alice.id)
    assert (await store.load_subject("alice", None)).user == given
    assert [u.role for u in await store.list_users(None, 10)] == [StaffRole.HELPDESK]
    taken = await store.update_user_role(alice.id, None, now, [event("role_set", alice.id)])
    assert taken.role is None and (await store.load_user_by_name("alice")) == taken
    assert len(await db.rows("SELECT id FROM audit WHERE event = 'role_set'")) == 2
    with pytest.raises(NotFound):
        await store.update_user_role(UserId(999), StaffRole.ADMIN, now, [])


async def test_unknown_subject_is_empty(store: Store) -> None:
    subject = await store.load_subject("nobody", "10.0.0.1")
    assert subject.user is None and subject.devices == [] and subject.limits == LimitState()
    assert subject.bucket is None
    assert (await store.load_subject(UserId(42), None)).user is None


# --- the replay guard -----------------------------------------------------------------------
async def test_accept_totp_only_takes_a_greater_step(store: Store, clock: Any, db: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)
    assert not await store.accept_totp(did, uid, 100, 0, now, None, [event("verify", uid)])
    assert not await store.accept_totp(did, uid, 99, 0, now, None, [event("verify", uid)])
    assert await store.accept_totp(did, uid, 101, 1, now, None, [event("verify", uid)])
    assert not await store.accept_totp(did, uid, 101, 1, now, None, [event("verify", uid)])
    device = await store.load_device(did)
    assert device is not None and (device.last_step, device.drift, device.last_used_at) == (101, 1, now)
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify'") == 1


async def test_accept_totp_on_a_spent_challenge_is_refused_and_writes_nothing(store: Store, clock: Any,
                                                                              db: Any) -> None:
    """Regression: the rollback for a spent challenge used to fall through to ``return True``."""
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)
    challenge = Challenge(id_hash="c" * 64, user_id=uid, purpose="signin", methods=frozenset({Method.TOTP}),
                          created_at=now, expires_at=now + timedelta(minutes=5), tries_left=3, source=None,
                          protocol="test")
    await store.insert_challenge(challenge, [])
    assert await store.accept_totp(did, uid, 101, 0, now, challenge.id_hash, [event("verify", uid)])
    before = await db.counts()
    # A later step on the same (now spent) challenge: the step guard passes, the challenge does not.
    assert not await store.accept_totp(did, uid, 102, 0, now, challenge.id_hash, [event("verify", uid)])
    assert await db.counts() == before
    assert (await store.load_device(did)).last_step == 101  # type: ignore[union-attr]

    # An expired challenge is refused the same way.
    late = Challenge(**{**{f: getattr(challenge, f) for f in challenge.__slots__}, "id_hash": "d" * 64,
                        "expires_at": now + timedelta(seconds=1)})
    await store.insert_challenge(late, [])
    later = now + timedelta(seconds=1)
    assert not await store.accept_totp(did, uid, 103, 0, later, late.id_hash, [event("verify", uid)])
    assert (await store.load_device(did)).last_step == 101  # type: ignore[union-attr]


async def test_accept_totp_resets_counters_but_not_a_hard_lock(store: Store, clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)

    def bump(hard: bool) -> Callable[[LimitState], LimitChange]:
        return lambda s: LimitChange(state=LimitState(failures=s.failures + 1, total_failures=s.total_failures + 1,
                                                      hard_locked=hard, source_failures=s.source_failures + 1))

    await store.record_failure(uid, "10.0.0.1", now, bump(False), None, None, [])
    assert (await store.load_subject(uid, "10.0.0.1")).limits.source_failures == 1
    assert await store.accept_totp(did, uid, 101, 0, now, None, [])
    assert await store.load_limits(uid) == LimitState()
    assert (await store.load_subject(uid, "10.0.0.1")).limits.source_failures == 0

    await store.record_failure(uid, None, now, bump(True), None, None, [])
    assert await store.accept_totp(did, uid, 102, 0, now, None, [])
    assert (await store.load_limits(uid)).hard_locked
    assert await store.reset_limits(uid, now, [event("lockout_reset", uid)])
    assert await store.load_limits(uid) == LimitState()


async def test_record_failure_spends_challenge_tries_and_drains_the_bucket(store: Store, clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    challenge = Challenge(id_hash="e" * 64, user_id=uid, purpose="signin", methods=frozenset({Method.TOTP}),
                          created_at=now, expires_at=now + timedelta(minutes=5), tries_left=2, source="10.0.0.9",
                          protocol="test")
    await store.insert_challenge(challenge, [])

    def drain(tokens: float | None, _at: Any) -> float:
        return (10.0 if tokens is None else tokens) - 1

    assert await store.record_failure(None, "10.0.0.9", now, lambda s: LimitChange(state=s), drain,
                                      challenge.id_hash, [event("verify")]) is None
    after_one = await store.load_challenge(challenge.id_hash)
    assert after_one is not None and after_one.tries_left == 1 and not after_one.consumed
    assert await store.load_limits(uid) == LimitState()  # an unknown user's failure touches no user
    await store.record_failure(None, "10.0.0.9", now, lambda s: LimitChange(state=s), drain,
                               challenge.id_hash, [])
    spent = await store.load_challenge(challenge.id_hash)
    assert spent is not None and spent.tries_left == 0 and spent.consumed
    subject = await store.load_subject("alice", "10.0.0.9")
    assert subject.bucket == (8.0, now)
    assert await store.count_open_challenges(now) == 0


# --- remembered devices ------------------------------------------------------------------------
async def test_remembered_rotation_and_theft(store: Store, clock: Any, db: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)
    rd = RememberedDevice(series="s1", user_id=uid, label="laptop", created_at=now,
                          expires_at=now + timedelta(days=7), last_used_at=None)
    assert await store.accept_totp(did, uid, 101, 0, now, None, [], rd, "h1")
    assert [r.series for r in await store.list_remembered(uid, now)] == ["s1"]

    def theft(user_id: UserId) -> list[AuditEvent]:
        return [AuditEvent(event="remembered_device", outcome="revoked", user_id=user_id)]

    ok = await store.rotate_remembered(uid, "s1", 1, "h1", "h2", now, theft)
    assert (ok.user_id, ok.counter, ok.stolen) == (uid, 2, False)
    other = await new_user(store, now, "mallory")
    assert (await store.rotate_remembered(other, "s1", 2, "h2", "h3", now, theft)).user_id is None
    stale = await store.rotate_remembered(uid, "s1", 1, "h1", "h9", now, theft)
    assert stale.stolen and stale.user_id == uid
    assert await store.list_remembered(uid, now) == []
    assert (await store.rotate_remembered(uid, "s1", 2, "h2", "h3", now, theft)).user_id is None
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'remembered_device'") == 1


async def test_delete_remembered_scopes(store: Store, clock: Any) -> None:
    now = clock.now()
    a, b = await new_user(store, now, "a"), await new_user(store, now, "b")
    for uid, series in ((a, "a1"), (a, "a2"), (b, "b1")):
        did = await new_active_totp(store, uid, now) if series.endswith("1") else None
        rd = RememberedDevice(series=series, user_id=uid, label="x", created_at=now,
                              expires_at=now + timedelta(days=1), last_used_at=None)
        step = 101 if did is not None else 102
        device_id = did if did is not None else (await store.load_devices(uid))[0].id
        assert await store.accept_totp(device_id, uid, step, 0, now, None, [], rd, f"h-{series}")
    assert await store.delete_remembered(a, "a2", now, no_audit) == 1
    assert await store.delete_remembered(a, "b1", now, no_audit) == 0  # not a's series
    assert await store.delete_remembered(a, None, now, no_audit) == 1
    assert await store.delete_remembered(None, None, now, no_audit) == 1
    # Expired series are not listed.
    assert await store.list_remembered(b, now) == []


# --- policy, caller tokens, audit -------------------------------------------------------------
async def test_policy_round_trip(store: Store, clock: Any) -> None:
    now = clock.now()
    assert await store.load_policy() is None
    first = Policy(mfa_required=MfaRequired.ENROLLED, allowed_methods=frozenset({Method.TOTP, Method.PASSKEY}),
                   remember_device=True, remember_days=30, approval_with_totp=True, approval_email_notice=True)
    assert await store.save_policy(first, now, [event("policy_changed")], only_if_absent=True)
    assert not await store.save_policy(Policy(), now, [event("policy_changed")], only_if_absent=True)
    assert await store.load_policy() == first
    assert await store.save_policy(Policy(), now, [event("policy_changed")])
    assert await store.load_policy() == Policy()
    assert len(await store.query_audit(AuditFilter(event="policy_changed"))) == 2


async def test_caller_tokens(store: Store, clock: Any) -> None:
    now = clock.now()
    token = await store.insert_caller_token("ci", Role.SERVICE, "hash-1", now, [])
    assert (token.name, token.role, token.revoked, token.created_at) == ("ci", Role.SERVICE, False, now)
    with pytest.raises(AlreadyExists):
        await store.insert_caller_token("ci", Role.ADMIN, "hash-2", now, [])
    assert await store.load_caller_by_hash("hash-1") == token
    assert await store.revoke_caller_token("ci", now, [])
    assert not await store.revoke_caller_token("ci", now, [])
    assert (await store.load_caller_by_hash("hash-1")).revoked  # type: ignore[union-attr]
    again = await store.insert_caller_token("ci", Role.ADMIN, "hash-3", now, [])
    assert again.role is Role.ADMIN and [t.name for t in await store.list_caller_tokens()] == ["ci"]


async def test_audit_query_filters_and_pages(store: Store, clock: Any) -> None:
    now = clock.now()
    for i in range(5):
        await store.append_audit(now + timedelta(seconds=i), [
            AuditEvent(event="verify" if i % 2 else "signin", outcome="refused" if i < 3 else "accepted",
                       user_id=UserId(7) if i < 4 else None, username="alice", method="totp", protocol="radius",
                       source="10.0.0.1", reason="wrong_code", actor="nas1", detail=f"n={i}")])
    everything = await store.query_audit(AuditFilter())
    assert [r.event.detail for r in everything] == [f"n={i}" for i in (4, 3, 2, 1, 0)]
    assert everything[-1].at == now and everything[-1].event.actor == "nas1"
    assert [r.event.detail for r in await store.query_audit(AuditFilter(event="verify"))] == ["n=3", "n=1"]
    assert len(await store.query_audit(AuditFilter(user_id=UserId(7)))) == 4
    assert len(await store.query_audit(AuditFilter(outcome="accepted"))) == 2
    window = AuditFilter(since=now + timedelta(seconds=1), until=now + timedelta(seconds=3))
    assert [r.event.detail for r in await store.query_audit(window)] == ["n=2", "n=1"]
    page = await store.query_audit(AuditFilter(limit=2))
    rest = await store.query_audit(AuditFilter(before_id=page[-1].id, limit=10))
    assert [r.event.detail for r in page + rest] == [r.event.detail for r in everything]


async def test_sealed_secrets_are_swapped_only_when_unchanged(store: Store, clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)
    assert await store.count_sealed_by_kid() == {"kx": 1}
    assert await store.load_sealed_secrets("kx", 10) == []
    assert await store.load_sealed_secrets("ky", 10) == [(did, f"kx:sealed-{did}")]
    assert not await store.update_sealed_secret(did, "kx:something-else", "ky:new")
    assert await store.update_sealed_secret(did, f"kx:sealed-{did}", "ky:new")
    assert await store.count_sealed_by_kid() == {"ky": 1}


async def test_one_totp_device_per_user_is_enforced_by_the_store(store: Store, clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    await new_active_totp(store, uid, now)
    with pytest.raises(PreconditionFailed):
        await store.insert_pending_totp(uid, "app", TotpParams(), now, now + timedelta(minutes=10),
                                        lambda did: "kx:s", no_audit)


# --- races across two Store instances ---------------------------------------------------------
async def test_fifty_racing_accepts_of_one_step_across_two_stores(store: Store, store_opener: Opener,
                                                                  clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    did = await new_active_totp(store, uid, now)
    other = await store_opener()
    stores = [store, other] * 25
    results = await asyncio.gather(*(s.accept_totp(did, uid, 101, 0, now, None, [event("verify", uid)])
                                     for s in stores))
    assert results.count(True) == 1
    assert len(await store.query_audit(AuditFilter(event="verify"))) == 1


async def test_fifty_concurrent_verifications_of_one_code_accept_once(mfa: Any, mfa_factory: Any, enrol: Any,
                                                                      store_opener: Opener, db: Any) -> None:
    """The issue's check: 50 concurrent verifications of the same valid code on the same
    device, across two store connections → exactly one accepted."""
    alice = await enrol("alice")
    second = await mfa_factory(store=await store_opener())
    code = alice.code(1)
    results = await asyncio.gather(*(verify_code(m.signin, "alice", code, Attempt(protocol="test", source=None))
                                     for m in [mfa, second] * 25))
    assert [r.accepted for r in results].count(True) == 1
    assert {r.reason for r in results if not r.accepted} == {Reason.REPLAY}
    assert await db.scalar("SELECT last_step FROM devices WHERE id = $1", alice.device.id) == alice.step(1)
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify' AND outcome = 'accepted'") == 1
    # The replays of one code count as one failure at most.
    assert (await mfa.store.load_limits(alice.user.id)).total_failures <= 1


async def test_concurrent_bindings_of_one_user_leave_one_pending_device(mfa: Any, mfa_factory: Any,
                                                                        store_opener: Opener, db: Any) -> None:
    """A double click on "bind" (here: eight at once, through two store instances) is
    not an internal error: each binding replaces the previous pending one."""
    await mfa.users.create("alice", None)
    second = await mfa_factory(store=await store_opener())
    results = await asyncio.gather(*(m.devices.begin_totp("alice") for m in [mfa, second] * 4),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert await db.scalar("SELECT count(*) FROM devices") == 1
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'device_bind_started'") == 8


async def test_concurrent_creation_of_one_username_is_already_exists(store: Store, store_opener: Opener,
                                                                     clock: Any, db: Any) -> None:
    other = await store_opener()
    results = await asyncio.gather(*(s.create_user("alice", None, clock.now(), no_audit)
                                     for s in [store, other] * 4), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException)), results
    assert await db.scalar("SELECT count(*) FROM users") == 1


async def test_concurrent_failures_are_all_counted(mfa: Any, mfa_factory: Any, enrol: Any, store_opener: Opener) -> None:
    """Failure counters are updated under the user's row lock: no failure is lost when
    instances record them at the same moment."""
    alice = await enrol("alice")
    second = await mfa_factory(store=await store_opener())
    codes = alice.wrong_codes()
    wrong = [next(codes) for _ in range(9)]
    attempt = Attempt(protocol="test")
    results = await asyncio.gather(*(verify_code(m.signin, "alice", c, attempt)
                                     for m, c in zip([mfa, second] * 5, wrong, strict=False)))
    assert not any(r.accepted for r in results)
    state = await mfa.store.load_limits(alice.user.id)
    assert (state.failures, state.total_failures, state.locked_until) == (9, 9, None)
    await verify_code(second.signin, "alice", next(codes), attempt)
    assert (await mfa.store.load_limits(alice.user.id)).locked_until is not None


# --- RADIUS requests claimed and replies shared, in batches ----------------------------------
async def test_a_batch_of_claims_answers_each_key_in_order(store: Store) -> None:
    """New keys are owned; a key repeated in the batch, or claimed and unexpired, is being
    decided; a saved reply is returned; an expired claim or reply can be claimed again."""
    now = 1000.0
    await store.save_radius_replies([(b"answered", b"old", now + 5), (b"answered", b"reply", now + 5),
                                     (b"stale", b"gone", now - 1)])
    assert await store.claim_radius_requests([(b"held", now + 5)], now) == [RequestClaim(owned=True)]
    claims = await store.claim_radius_requests(
        [(b"new", now + 5), (b"answered", now + 5), (b"held", now + 5), (b"new", now + 5), (b"stale", now + 5)], now)
    assert claims == [RequestClaim(owned=True), RequestClaim(owned=False, reply=b"reply"),
                      RequestClaim(owned=False), RequestClaim(owned=False), RequestClaim(owned=True)]
    assert await store.claim_radius_requests([(b"held", now + 20)], now + 6) == [RequestClaim(owned=True)]
    assert await store.load_radius_reply(b"answered", now) == b"reply"  # the last of a key given twice
    assert await store.load_radius_reply(b"answered", now + 6) is None  # expired
    assert await store.claim_radius_requests([], now) == []
    await store.save_radius_replies([])


# --- recovery codes -----------------------------------------------------------------------
async def test_recovery_codes_replace_consume_once_and_go_with_the_last(store: Store, clock: Any, db: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    await store.replace_recovery_codes(uid, 3, now, lambda cid: f"kx:mac-{cid}", [event("recovery_codes", uid)])
    first = await store.load_recovery_set(uid)
    assert first is not None and first.codes_left == 3 and first.created_at == now and first.last_used_at is None
    ids = [int(r["id"]) for r in await db.rows("SELECT id FROM recovery_codes ORDER BY id")]
    assert [r["code_mac"] for r in await db.rows("SELECT code_mac FROM recovery_codes ORDER BY id")] == [
        f"kx:mac-{i}" for i in ids]

    def only(target: int) -> Callable[[int, str], bool]:
        return lambda cid, mac: cid == target and mac == f"kx:mac-{target}"

    def accept(target: int, when: Any, challenge: str | None = None) -> Awaitable[Any]:
        return store.accept_recovery_code(uid, when, only(target), challenge, [event("verify", uid)], None, None,
                                          None)

    # A challenge completed meanwhile: nothing changes, the code stays unused.
    assert (await accept(ids[0], now, "e" * 64)).value == "challenge_gone"
    assert (await store.load_recovery_set(uid)).codes_left == 3  # type: ignore[union-attr]
    later = now + timedelta(seconds=5)
    assert (await accept(ids[0], later)).value == "accepted"
    assert (await accept(ids[0], later)).value == "wrong"  # used codes are not compared again
    state = await store.load_recovery_set(uid)
    assert state is not None and state.codes_left == 2 and state.last_used_at == later
    # Replacing drops every old code; the user holds one set.
    await store.replace_recovery_codes(uid, 2, later, lambda cid: f"kx:mac-{cid}", [])
    assert await db.scalar("SELECT count(*) FROM devices WHERE method = 'recovery'") == 1
    new_ids = [int(r["id"]) for r in await db.rows("SELECT id FROM recovery_codes ORDER BY id")]
    assert len(new_ids) == 2 and not set(new_ids) & set(ids)
    for i in new_ids:
        assert (await accept(i, later)).value == "accepted"
    assert await store.load_recovery_set(uid) is None
    assert await db.scalar("SELECT count(*) FROM recovery_codes") == 0
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify'") == 3


async def test_racing_recovery_code_uses_across_two_stores(store: Store, store_opener: Opener, clock: Any) -> None:
    now = clock.now()
    uid = await new_user(store, now)
    await store.replace_recovery_codes(uid, 2, now, lambda cid: f"kx:mac-{cid}", [])
    other = await store_opener()
    assert (await other.accept_recovery_code(uid, now, lambda cid, mac: False, None, [], None, None,
                                             None)).value == "wrong"
    first = await _first_code(store)
    results = await asyncio.gather(*(s.accept_recovery_code(uid, now, lambda cid, mac: mac == f"kx:mac-{first}",
                                                            None, [event("verify", uid)], None, None, None)
                                     for s in [store, other] * 10))
    assert [r.value for r in results].count("accepted") == 1
    assert set(r.value for r in results) <= {"accepted", "used", "wrong"}
    assert (await store.load_recovery_set(uid)).codes_left == 1  # type: ignore[union-attr]


async def _first_code(store: Store) -> int:
    async with store.read() as tx:  # type: ignore[attr-defined]
        row = await tx.fetchrow("SELECT min(id) AS id FROM recovery_codes")
    return int(row["id"])


async def test_count_users_counts_without_listing(store: Store, clock: Any) -> None:
    """The console's overview: users, without MFA, one method type, locked, refused sign-ins."""
    now = clock.now()
    await new_user(store, now, "nobody")                       # no device: without MFA
    one = await new_user(store, now, "one")                    # one type: at lock-out risk
    await new_active_totp(store, one, now)
    two = await new_user(store, now, "two")                    # TOTP and recovery codes: two types
    await new_active_totp(store, two, now)
    await store.replace_recovery_codes(two, 2, now, lambda i: f"mac-{i}", [])
    await store.insert_pending_totp(await new_user(store, now, "pending"), "app", TotpParams(), now,
                                    now + timedelta(minutes=10), lambda did: f"kx:sealed-{did}", no_audit)
    locked = LimitState(failures=5, total_failures=5, locked_until=now + timedelta(minutes=5))
    await store.record_failure(one, None, now, lambda s: LimitChange(state=locked), None, None, [])
    refused = AuditEvent(event="signin", outcome="refused", user_id=one, username="one")
    await store.append_audit(now - timedelta(hours=25), [refused])  # too old to count
    await store.append_audit(now - timedelta(hours=1), [refused, refused,
                                                          AuditEvent(event="verify", outcome="refused")])
    await store.append_audit(now, [AuditEvent(event="signin", outcome="allowed")])

    counts = await store.count_users(now, now - timedelta(hours=24))
    assert (counts.users, counts.without_mfa, counts.one_method_type, counts.locked, counts.failed_sign_ins) == \
        (4, 2, 1, 1, 3)
    later = await store.count_users(now + timedelta(minutes=6), now - timedelta(hours=24))
    assert later.locked == 0  # the timed lock-out is over
