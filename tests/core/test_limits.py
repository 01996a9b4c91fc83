"""Lock-outs and rate limits on a fixed clock, over both store engines.

Defaults under test (mfad.config.LimitSettings): 10 failures → 60 s, doubling, capped
at 1 h; hard lock after 100 failures without a success; a (user, source) pair counts at
most 5 failures towards the user's lock-out and then backs off on its own (30 s,
doubling, capped at 15 min); a failure bucket per source (burst 60, 2/s).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from mfad.config import LimitSettings
from mfad.core.errors import InvalidInput
from mfad.core.limits import Block, LimitRules
from mfad.core.model import LimitState, UserId
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Reason
from signin_calls import begin, verify_code

NO_SOURCE = Attempt(protocol="test")


def at(source: str | None) -> Attempt:
    return Attempt(protocol="radius", source=source)


def outward(result: Any) -> Any:
    return dataclasses.replace(result, reason=Reason.ACCEPTED)


async def fail(mfa: Mfa, user: Any, codes: Any, n: int, attempt: Attempt = NO_SOURCE) -> list[Reason]:
    reasons = []
    for _ in range(n):
        result = await verify_code(mfa.signin, user.username, next(codes), attempt)
        assert not result.accepted
        reasons.append(result.reason)
    return reasons


async def test_ten_wrong_codes_lock_out_until_the_delay_passes(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    codes = alice.wrong_codes()
    assert await fail(mfa, alice, codes, 9) == [Reason.WRONG_CODE] * 9
    wrong = await verify_code(mfa.signin, "alice", next(codes), NO_SOURCE)  # the tenth
    assert wrong.reason is Reason.WRONG_CODE
    state = await mfa.lockout("alice")
    assert state.locked_until == clock.now() + timedelta(seconds=60) and state.lockouts == 1
    lock_rows = await mfa.audit(AuditFilter(event="lockout"))
    assert [(r.event.outcome, r.event.username) for r in lock_rows] == [("locked", "alice")]

    locked = await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)
    assert not locked.accepted and locked.reason is Reason.LOCKED
    assert outward(locked) == outward(wrong)  # the caller cannot tell
    assert (await begin(mfa.signin, "alice", alice.password, NO_SOURCE)).outcome is Outcome.REFUSED
    assert (await mfa.lockout("alice")).total_failures == 10  # refusals while locked are not counted

    clock.advance(59)
    assert (await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)).reason is Reason.LOCKED
    clock.advance(1)
    assert (await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)).accepted
    assert await mfa.lockout("alice") == LimitState()  # a success resets everything
    refusals = await mfa.audit(AuditFilter(event="verify", outcome="refused", limit=1000))
    assert sum(r.event.reason == "locked" for r in refusals) == 2


async def test_nine_failures_then_a_success_start_again_from_zero(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    await fail(mfa, alice, codes, 9)
    assert (await verify_code(mfa.signin, "alice", alice.code(1), NO_SOURCE)).accepted
    await fail(mfa, alice, codes, 9)
    assert (await mfa.lockout("alice")).locked_until is None
    clock.advance(60)
    assert (await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)).accepted


async def test_lockout_delay_doubles(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    delays = []
    for _ in range(4):
        await fail(mfa, alice, codes, 10)
        state = await mfa.lockout("alice")
        assert state.locked_until is not None
        delays.append((state.locked_until - clock.now()).total_seconds())
        clock.set(state.locked_until)
    assert delays == [60, 120, 240, 480]
    assert (await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)).accepted


async def test_hard_lock_after_a_hundred_failures_needs_an_administrator(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    for _ in range(10):
        await fail(mfa, alice, codes, 10)
        state = await mfa.lockout("alice")
        if state.locked_until is not None and state.locked_until > clock.now():
            clock.set(state.locked_until)
    state = await mfa.lockout("alice")
    assert state.hard_locked and state.total_failures == 100
    hard = await mfa.audit(AuditFilter(event="lockout", outcome="hard_locked"))
    assert len(hard) == 1

    clock.advance(86400 * 30)  # time alone never unlocks
    refused = await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)
    assert not refused.accepted and refused.reason is Reason.HARD_LOCKED
    assert (await begin(mfa.signin, "alice", alice.password, NO_SOURCE)).reason is Reason.HARD_LOCKED
    assert (await mfa.lockout("alice")).total_failures == 100  # guessing stopped

    assert await mfa.reset_lockout("alice", actor="ops")
    assert [r.event.actor for r in await mfa.audit(AuditFilter(event="lockout_reset"))] == ["ops"]
    assert await mfa.lockout("alice") == LimitState()
    assert (await verify_code(mfa.signin, "alice", alice.code(), NO_SOURCE)).accepted


@pytest.mark.parametrize("source", [None, "10.0.0.5"])
async def test_the_same_wrong_code_twenty_times_counts_once(mfa: Mfa, enrol: Any, source: str | None) -> None:
    alice = await enrol("alice")
    stale = next(alice.wrong_codes())
    for _ in range(20):
        result = await verify_code(mfa.signin, "alice", stale, at(source))
        assert not result.accepted and result.reason is Reason.WRONG_CODE
    state = await mfa.lockout("alice")
    assert (state.failures, state.total_failures, state.locked_until) == (1, 1, None)
    assert (await verify_code(mfa.signin, "alice", alice.code(1), at(source))).accepted


async def test_alternating_wrong_codes_each_count(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    a, b = next(codes), next(codes)
    for code in (a, b, a, b):
        await verify_code(mfa.signin, "alice", code, NO_SOURCE)
    assert (await mfa.lockout("alice")).failures == 4


async def test_unknown_usernames_never_touch_a_real_user(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice = await enrol("alice")
    code = alice.code(1)
    for name in ("nobody", "alice2", "ali", "alice@example.com"):
        for source in (None, "10.0.0.7"):
            r = await verify_code(mfa.signin, name, code, at(source))
            assert not r.accepted and r.reason is Reason.UNKNOWN_USER
            r = await begin(mfa.signin, name, alice.password, at(source))
            assert r.outcome is Outcome.REFUSED and r.reason is Reason.UNKNOWN_USER
    for bad in ("alice ", " alice", "alice\n", ""):
        with pytest.raises(InvalidInput):
            await verify_code(mfa.signin, bad, code, NO_SOURCE)
    assert await db.scalar("SELECT count(*) FROM user_limits") == 0
    assert await db.scalar("SELECT count(*) FROM source_limits") == 0
    assert await mfa.lockout("alice") == LimitState()
    assert (await verify_code(mfa.signin, "alice", code, at("10.0.0.7"))).accepted


async def test_one_noisy_source_cannot_lock_the_user_out_elsewhere(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    noisy = at("203.0.113.66")
    counted = 0
    for _ in range(25):
        result = await verify_code(mfa.signin, "alice", next(codes), noisy)
        if result.reason is Reason.SOURCE_BACKOFF:
            state = (await mfa.store.load_subject(alice.user.id, noisy.source)).limits
            assert state.source_blocked_until is not None
            clock.set(state.source_blocked_until)
        else:
            assert result.reason is Reason.WRONG_CODE
            counted += 1
    state = await mfa.lockout("alice")
    assert state.failures == 5 and state.locked_until is None  # one source counts at most 5
    assert state.total_failures == counted > 10  # but the hard-lock total counts them all

    # While the noisy source waits, its attempts are refused unverified, even the right code.
    await verify_code(mfa.signin, "alice", next(codes), noisy)
    blocked = await verify_code(mfa.signin, "alice", alice.code(), noisy)
    assert not blocked.accepted and blocked.reason is Reason.SOURCE_BACKOFF
    # The user, from anywhere else, signs in.
    assert (await verify_code(mfa.signin, "alice", alice.code(), at("198.51.100.10"))).accepted
    assert await mfa.lockout("alice") == LimitState()


async def test_failures_from_two_sources_add_up_to_a_lockout(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    codes = alice.wrong_codes()
    await fail(mfa, alice, codes, 5, at("192.0.2.1"))
    assert (await mfa.lockout("alice")).locked_until is None
    await fail(mfa, alice, codes, 5, at("192.0.2.2"))
    assert (await mfa.lockout("alice")).locked_until is not None
    result = await verify_code(mfa.signin, "alice", alice.code(1), at("192.0.2.3"))
    assert not result.accepted and result.reason is Reason.LOCKED


async def test_lockout_is_shared_by_instances_on_one_database(mfa: Mfa, mfa_factory: Any, store_opener: Any,
                                                              enrol: Any) -> None:
    alice = await enrol("alice")
    other = await mfa_factory(store=await store_opener())
    codes = alice.wrong_codes()
    await fail(mfa, alice, codes, 5)
    await fail(other, alice, codes, 5)
    for instance in (mfa, other):
        assert (await verify_code(instance.signin, "alice", alice.code(1), NO_SOURCE)).reason is Reason.LOCKED


async def test_source_failure_bucket_limits_spraying(mfa: Mfa, enrol: Any, clock: Any, password: str) -> None:
    alice = await enrol("alice")
    bob = await enrol("bob")
    sprayer = at("198.18.0.1")
    for i in range(60):  # the burst: 60 failures at one instant, spread over unknown names
        r = await verify_code(mfa.signin, f"user{i}", "123456", sprayer)
        assert r.reason is Reason.UNKNOWN_USER
    # The bucket is empty: even the right code (or password) from there is refused unverified.
    blocked = await verify_code(mfa.signin, "alice", alice.code(1), sprayer)
    assert not blocked.accepted and blocked.reason is Reason.SOURCE_RATE
    assert (await begin(mfa.signin, "alice", password, sprayer)).reason is Reason.SOURCE_RATE
    assert (await mfa.lockout("alice")) == LimitState()
    # Other sources are unaffected.
    assert (await verify_code(mfa.signin, "bob", bob.code(1), at("198.18.0.2"))).accepted
    # It refills at 2 per second.
    clock.advance(1)
    assert (await verify_code(mfa.signin, "alice", alice.code(1), sprayer)).accepted


# --- the rules themselves ------------------------------------------------------------------
RULES = LimitRules(LimitSettings())
USER = UserId(1)


def test_lockout_delay_is_capped_at_an_hour(clock: Any) -> None:
    now = clock.now()
    state = LimitState(failures=9, total_failures=9, lockouts=12)
    change = RULES.after_failure(state, now, "h", user_id=USER, username="u", source=None)
    assert change.became_locked and change.state.locked_until == now + timedelta(hours=1)
    assert change.state.failures == 0 and change.state.lockouts == 13


def test_source_backoff_doubles_and_is_capped(clock: Any) -> None:
    now = clock.now()
    waits = []
    state = LimitState()
    for i in range(12):
        change = RULES.after_failure(state, now, f"h{i}", user_id=USER, username="u", source="s")
        state = dataclasses.replace(change.state, locked_until=None)
        if state.source_blocked_until is not None:
            waits.append((state.source_blocked_until - now).total_seconds())
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]
    assert state.failures == 5 and state.source_failures == 12


def test_blocks_in_order_of_precedence(clock: Any) -> None:
    now = clock.now()
    later = now + timedelta(seconds=10)
    assert RULES.blocked(LimitState(hard_locked=True, locked_until=later), None, now) is Block.HARD_LOCKED
    assert RULES.blocked(LimitState(locked_until=later, source_blocked_until=later), None, now) is Block.LOCKED
    assert RULES.blocked(LimitState(source_blocked_until=later), (0.0, now), now) is Block.SOURCE_BACKOFF
    assert RULES.blocked(LimitState(), (0.5, now), now) is Block.SOURCE_RATE
    assert RULES.blocked(LimitState(), (0.5, now), now + timedelta(seconds=0.25)) is None
    assert RULES.blocked(LimitState(locked_until=now), None, now) is None
    assert RULES.bucket_level(None, None, now) == 60
    assert RULES.bucket_level(10.0, now, now + timedelta(seconds=100)) == 60
    assert LimitRules(LimitSettings(source_failure_rate=0)).blocked(LimitState(), (0.0, now), now) is None


def test_hard_lock_is_reported_once(clock: Any) -> None:
    now = clock.now()
    state = LimitState(total_failures=99)
    first = RULES.after_failure(state, now, "a", user_id=USER, username="u", source=None)
    assert first.became_locked and first.state.hard_locked
    assert [e.outcome for e in first.audit] == ["hard_locked"]
    second = RULES.after_failure(first.state, now, "b", user_id=USER, username="u", source=None)
    assert not second.became_locked and second.audit == []
