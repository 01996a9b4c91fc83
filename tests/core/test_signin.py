"""The sign-in decision and TOTP verification, on a fixed clock, over both store engines.

begin → challenge → complete, verify_code in one call; the replay guard, the ±1 window,
remembered drift; challenges that expire, allow a bounded number of tries and are used
once; refusals that look the same whatever their reason; one audit row per outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from mfad.core.errors import InvalidInput
from mfad.core.model import Method
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Reason
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test")


async def audit_tail(mfa: Mfa, since_id: int = 0) -> list[tuple[str, str, str | None]]:
    records = await mfa.audit(AuditFilter(limit=1000))
    return [(r.event.event, r.event.outcome, r.event.reason) for r in reversed(records) if r.id > since_id]


async def last_audit_id(mfa: Mfa) -> int:
    records = await mfa.audit(AuditFilter(limit=1))
    return records[0].id if records else 0


# --- begin + complete ------------------------------------------------------------------------
async def test_password_then_totp_through_a_challenge(mfa: Mfa, enrol: Any, clock: Any, db: Any) -> None:
    alice = await enrol("alice")
    mark = await last_audit_id(mfa)
    begun = await begin(mfa.signin, "alice", alice.password, Attempt(protocol="grpc", source="10.1.1.1"))
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED and not begun.allowed
    assert begun.methods == {Method.TOTP} and begun.user is not None and begun.user.id == alice.user.id
    assert begun.challenge_id and len(begun.challenge_id) >= 22
    assert (begun.expires_at - clock.now()).total_seconds() == 300  # type: ignore[operator]
    # Only the challenge id's hash is stored.
    assert await db.scalar("SELECT count(*) FROM challenges WHERE id_hash = $1", begun.challenge_id) == 0
    assert await mfa.store.count_open_challenges(clock.now()) == 1

    done = await mfa.signin.complete(begun.challenge_id, Method.TOTP, alice.code(1), Attempt(protocol="grpc"))
    assert done.accepted and done.reason is Reason.ACCEPTED and done.method is Method.TOTP
    assert done.user is not None and done.user.username == "alice" and done.remembered_token is None
    assert await mfa.store.count_open_challenges(clock.now()) == 0
    assert await audit_tail(mfa, mark) == [("signin", "second_factor_required", "second_factor"),
                                           ("verify", "accepted", "accepted")]

    # Single use: the next code on the same challenge is refused.
    clock.advance(60)
    again = await mfa.signin.complete(begun.challenge_id, Method.TOTP, alice.code(), ATTEMPT)
    assert not again.accepted and again.reason is Reason.NO_CHALLENGE


async def test_caller_checked_first_factor(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", None, ATTEMPT)
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED
    assert (await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)).accepted


async def test_user_without_device_must_enrol_passkey_or_totp_never_email(mfa: Mfa, password: str) -> None:
    await mfa.users.create("alice", password)
    begun = await begin(mfa.signin, "alice", password, ATTEMPT)
    assert begun.outcome is Outcome.ENROLMENT_REQUIRED and begun.reason is Reason.NO_DEVICE
    assert begun.methods == {Method.PASSKEY, Method.TOTP}
    # An enrolment challenge cannot be spent as a sign-in.
    result = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, "123456", ATTEMPT)
    assert not result.accepted


async def test_verify_code_accepts_and_refuses_replays(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.advance(300)  # well past the step used to confirm the device
    ok = await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)
    assert ok.accepted and ok.user is not None and ok.user.id == alice.user.id
    same = await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)
    assert not same.accepted and same.reason is Reason.REPLAY
    # The current step, inside the window (now centred one step ahead), is older than the
    # accepted one and was never used: a replay all the same.
    older = await verify_code(mfa.signin, "alice", alice.code(0), ATTEMPT)
    assert not older.accepted and older.reason is Reason.REPLAY
    device = await mfa.store.load_device(alice.device.id)
    assert device is not None and device.last_step == alice.step(1)


@pytest.mark.parametrize(("steps", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
async def test_window_is_one_step_each_way(mfa: Mfa, bind: Any, steps: int, accepted: bool, clock: Any) -> None:
    await mfa.users.create("alice", None)
    pending = await bind("alice")
    clock.advance(-60)  # confirm two steps back so every tested step is newer than the confirmed one
    await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())
    clock.advance(60)
    result = await verify_code(mfa.signin, "alice", pending.code(steps), ATTEMPT)
    assert result.accepted is accepted
    if not accepted:
        assert result.reason is Reason.WRONG_CODE


async def test_drift_is_remembered_and_capped(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted  # phone one step ahead
    assert (await mfa.store.load_device(alice.device.id)).drift == 1  # type: ignore[union-attr]
    clock.advance(600)
    # Two steps ahead is outside ±1 around now, but inside ±1 around the remembered drift.
    assert (await verify_code(mfa.signin, "alice", alice.code(2), ATTEMPT)).accepted
    assert (await mfa.store.load_device(alice.device.id)).drift == 2  # type: ignore[union-attr]
    clock.advance(600)
    assert (await verify_code(mfa.signin, "alice", alice.code(3), ATTEMPT)).accepted
    assert (await mfa.store.load_device(alice.device.id)).drift == 2  # capped  # type: ignore[union-attr]
    clock.advance(600)
    refused = await verify_code(mfa.signin, "alice", alice.code(4), ATTEMPT)
    assert not refused.accepted and refused.reason is Reason.WRONG_CODE


async def test_drift_behind_the_server(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    assert (await verify_code(mfa.signin, "alice", alice.code(-1), ATTEMPT)).accepted
    assert (await mfa.store.load_device(alice.device.id)).drift == -1  # type: ignore[union-attr]
    clock.advance(300)
    assert (await verify_code(mfa.signin, "alice", alice.code(-2), ATTEMPT)).accepted


async def test_a_fresh_device_does_not_accept_two_steps_ahead(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    assert not (await verify_code(mfa.signin, "alice", alice.code(2), ATTEMPT)).accepted


async def test_codes_of_the_wrong_length_for_the_device_are_wrong_codes(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    eight = "0" * 2 + alice.code(1)  # 8 ASCII digits: a valid shape, not this device's length
    result = await verify_code(mfa.signin, "alice", eight, ATTEMPT)
    assert not result.accepted and result.reason is Reason.WRONG_CODE
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted


# --- challenges --------------------------------------------------------------------------------
async def test_challenge_expires(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    clock.advance(300)
    late = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(), ATTEMPT)
    assert not late.accepted and late.reason is Reason.EXPIRED
    # Nothing was spent: the same code works on a new challenge.
    again = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    assert (await mfa.signin.complete(again.challenge_id or "", Method.TOTP, alice.code(), ATTEMPT)).accepted


async def test_challenge_allows_a_bounded_number_of_tries(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    wrong = alice.wrong_codes()
    lefts = []
    for _ in range(3):
        r = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, next(wrong), ATTEMPT)
        assert not r.accepted and r.reason is Reason.WRONG_CODE
        lefts.append(r.tries_left)
    assert lefts == [2, 1, 0]
    spent = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)
    assert not spent.accepted and spent.reason is Reason.NO_CHALLENGE
    # The right code was not consumed by the spent challenge.
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted


async def test_custom_challenge_lifetime_and_tries(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT, challenge_ttl=120, challenge_tries=1)
    assert (begun.expires_at - clock.now()).total_seconds() == 120  # type: ignore[operator]
    r = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, next(alice.wrong_codes()), ATTEMPT)
    assert r.tries_left == 0
    r = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)
    assert r.reason is Reason.NO_CHALLENGE


async def test_method_not_offered_spends_a_try(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    r = await mfa.signin.complete(begun.challenge_id or "", Method.EMAIL, "123456", ATTEMPT)
    assert not r.accepted and r.reason is Reason.METHOD_NOT_OFFERED and r.tries_left == 2
    assert (await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)).accepted


@pytest.mark.parametrize("challenge_id", ["", "x" * 65])
async def test_malformed_challenge_ids_are_invalid_input(mfa: Mfa, db: Any, challenge_id: str) -> None:
    before = await db.counts()
    with pytest.raises(InvalidInput):
        await mfa.signin.complete(challenge_id, Method.TOTP, "123456", ATTEMPT)
    assert await db.counts() == before


async def test_unknown_challenge_is_refused(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    r = await mfa.signin.complete("no-such-challenge", Method.TOTP, alice.code(1), ATTEMPT)
    assert not r.accepted and r.reason is Reason.NO_CHALLENGE and r.user is None


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
async def test_two_codes_racing_on_one_challenge_accept_once(mfa: Mfa, enrol: Any, order: str) -> None:
    """Two valid codes (adjacent steps) completing the same challenge at once: the
    challenge is single use, so exactly one sign-in is accepted."""
    alice = await enrol("alice", password="pw-alice-123")
    begun = await begin(mfa.signin, "alice", "pw-alice-123", ATTEMPT)
    codes = [alice.code(0), alice.code(1)]
    if order == "newer-first":
        codes.reverse()
    cid = begun.challenge_id or ""
    results = await asyncio.gather(*(mfa.signin.complete(cid, Method.TOTP, c, ATTEMPT) for c in codes))
    assert [r.accepted for r in results].count(True) == 1


# --- refusals look alike ------------------------------------------------------------------------
def outward(result: Any) -> Any:
    """What a caller may see: everything but the reason (for the audit log and metrics only)."""
    return dataclasses.replace(result, reason=Reason.ACCEPTED)


async def test_unknown_user_and_wrong_password_look_the_same(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    unknown = await begin(mfa.signin, "nobody", alice.password, ATTEMPT)
    wrong = await begin(mfa.signin, "alice", "not the password", ATTEMPT)
    await mfa.users.set_disabled("alice", True)
    disabled = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    assert unknown.outcome is wrong.outcome is disabled.outcome is Outcome.REFUSED
    assert outward(unknown) == outward(wrong) == outward(disabled)
    assert (unknown.reason, wrong.reason, disabled.reason) == (Reason.UNKNOWN_USER, Reason.WRONG_PASSWORD,
                                                               Reason.DISABLED)
    assert unknown.user is None and unknown.challenge_id is None and not unknown.methods


async def test_unknown_user_and_wrong_code_look_the_same(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    wrong_code = next(alice.wrong_codes())
    unknown = await verify_code(mfa.signin, "nobody", wrong_code, ATTEMPT)
    wrong = await verify_code(mfa.signin, "alice", wrong_code, ATTEMPT)
    replay = await verify_code(mfa.signin, "alice", alice.code(), ATTEMPT)
    assert outward(unknown) == outward(wrong) == outward(replay)
    assert not unknown.accepted and unknown.user is None


# --- one audit row per outcome ------------------------------------------------------------------
async def test_every_outcome_writes_its_audit_row(mfa: Mfa, enrol: Any, clock: Any, password: str) -> None:
    alice = await enrol("alice")
    await mfa.users.create("newbie", password)
    attempt = Attempt(protocol="radius", source="10.9.9.9", client="nas-1")

    async def outcome(action: Any) -> list[tuple[str, str, str | None]]:
        mark = await last_audit_id(mfa)
        await action()
        return await audit_tail(mfa, mark)

    assert await outcome(lambda: verify_code(mfa.signin, "alice", alice.code(1), attempt)) == [
        ("verify", "accepted", "accepted")]
    assert await outcome(lambda: verify_code(mfa.signin, "alice", alice.code(1), attempt)) == [
        ("verify", "refused", "replay")]
    wrong = next(alice.wrong_codes())
    assert await outcome(lambda: verify_code(mfa.signin, "alice", wrong, attempt)) == [
        ("verify", "refused", "wrong_code")]
    assert await outcome(lambda: verify_code(mfa.signin, "nobody", "123456", attempt)) == [
        ("verify", "refused", "unknown_user")]
    assert await outcome(lambda: begin(mfa.signin, "alice", "wrong password", attempt)) == [
        ("signin", "refused", "wrong_password")]
    assert await outcome(lambda: begin(mfa.signin, "nobody", "whatever", attempt)) == [
        ("signin", "refused", "unknown_user")]
    assert await outcome(lambda: begin(mfa.signin, "alice", password, attempt)) == [
        ("signin", "second_factor_required", "second_factor")]
    assert await outcome(lambda: begin(mfa.signin, "newbie", password, attempt)) == [
        ("signin", "enrolment_required", "no_device")]
    begun = await begin(mfa.signin, "alice", password, attempt)
    clock.advance(301)
    assert await outcome(lambda: mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(),
                                                     attempt)) == [("verify", "refused", "expired_challenge")]
    assert await outcome(lambda: mfa.signin.complete("nope", Method.TOTP, alice.code(), attempt)) == [
        ("verify", "refused", "unknown_challenge")]
    await mfa.policy.update(actor="ops", mfa_required="off")
    assert await outcome(lambda: begin(mfa.signin, "alice", password, attempt)) == [
        ("signin", "allowed", "mfa_off")]
    await mfa.users.set_disabled("alice", True, actor="ops")
    assert await outcome(lambda: verify_code(mfa.signin, "alice", alice.code(1), attempt)) == [
        ("verify", "refused", "disabled")]

    rows = await mfa.audit(AuditFilter(event="verify", limit=1))
    assert (rows[0].event.protocol, rows[0].event.source, rows[0].event.actor) == ("radius", "10.9.9.9", "nas-1")
    assert rows[0].event.username == "alice" and rows[0].event.method == "totp"
