"""The global policy shapes the sign-in; remembered devices skip the second factor safely.

Over both store engines, on a fixed clock.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from mfad.config import PolicySettings
from mfad.core.errors import InvalidInput
from mfad.core.model import Method, MfaRequired
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Reason
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test")


async def remembered_token(mfa: Mfa, user: Any, *, label: str = "laptop", steps: int = 1) -> str:
    begun = await begin(mfa.signin, user.username, user.password, ATTEMPT)
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED
    done = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, user.code(steps), ATTEMPT,
                                     remember=True, remember_label=label)
    assert done.accepted and done.remembered_token is not None
    return done.remembered_token


# --- the policy -------------------------------------------------------------------------------
async def test_default_policy_requires_mfa_of_everybody(mfa: Mfa, enrol: Any, password: str) -> None:
    policy = await mfa.policy.current()
    assert policy.mfa_required is MfaRequired.ALL and not policy.remember_device and policy.remember_days == 7
    assert policy.allowed_methods == frozenset(Method)
    await enrol("alice")
    await mfa.users.create("newbie", password)
    assert (await begin(mfa.signin, "alice", password, ATTEMPT)).outcome is Outcome.SECOND_FACTOR_REQUIRED
    assert (await begin(mfa.signin, "newbie", password, ATTEMPT)).outcome is Outcome.ENROLMENT_REQUIRED


async def test_enrolled_policy_lets_users_without_a_device_in(mfa: Mfa, enrol: Any, bind: Any,
                                                              password: str) -> None:
    await mfa.policy.update(actor="ops", mfa_required=MfaRequired.ENROLLED)
    await enrol("alice")
    await mfa.users.create("newbie", password)
    await mfa.users.create("halfway", password)
    await bind("halfway")  # a pending binding does not make a user enrolled
    assert (await begin(mfa.signin, "alice", password, ATTEMPT)).outcome is Outcome.SECOND_FACTOR_REQUIRED
    for name in ("newbie", "halfway"):
        result = await begin(mfa.signin, name, password, ATTEMPT)
        assert result.outcome is Outcome.ALLOWED and result.reason is Reason.NOT_ENROLLED_ALLOWED, name
    assert (await begin(mfa.signin, "newbie", "wrong", ATTEMPT)).outcome is Outcome.REFUSED


async def test_mfa_off_needs_only_the_password(mfa: Mfa, enrol: Any, password: str) -> None:
    await enrol("alice")
    await mfa.policy.update(actor="ops", mfa_required="off")
    result = await begin(mfa.signin, "alice", password, ATTEMPT)
    assert result.outcome is Outcome.ALLOWED and result.reason is Reason.MFA_OFF and result.challenge_id is None
    assert (await begin(mfa.signin, "alice", "wrong", ATTEMPT)).outcome is Outcome.REFUSED


async def test_disallowed_method_cannot_be_used(mfa: Mfa, enrol: Any, password: str) -> None:
    alice = await enrol("alice")
    open_challenge = await begin(mfa.signin, "alice", password, ATTEMPT)
    await mfa.policy.update(actor="ops", allowed_methods=[Method.PASSKEY, Method.EMAIL])
    begun = await begin(mfa.signin, "alice", password, ATTEMPT)
    assert begun.outcome is Outcome.ENROLMENT_REQUIRED and begun.methods == {Method.PASSKEY}
    r = await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)
    assert not r.accepted and r.reason is Reason.METHOD_NOT_OFFERED
    # A challenge opened before the change cannot be completed with the now-forbidden method.
    r = await mfa.signin.complete(open_challenge.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)
    assert not r.accepted
    await mfa.policy.update(actor="ops", allowed_methods=list(Method))
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted


async def test_policy_changes_are_stored_and_audited(mfa: Mfa, mfa_factory: Any, config: Any) -> None:
    seeded = await mfa.audit(AuditFilter(event="policy_changed"))
    assert [(r.event.actor, r.event.outcome) for r in seeded] == [("config", "ok")]
    new = await mfa.policy.update(actor="ops", mfa_required="enrolled", remember_device=True, remember_days=30,
                                  allowed_methods=["totp", "passkey"])
    assert new.mfa_required is MfaRequired.ENROLLED and new.allowed_methods == {Method.TOTP, Method.PASSKEY}
    assert await mfa.store.load_policy() == new
    rows = await mfa.audit(AuditFilter(event="policy_changed"))
    assert rows[0].event.actor == "ops"
    assert "mfa_required=enrolled" in (rows[0].event.detail or "")
    assert "remember_days=30" in (rows[0].event.detail or "")
    # Another instance starting later does not overwrite the stored policy with its config.
    other = await mfa_factory(store=mfa.store, config=dataclasses.replace(
        config, policy=PolicySettings(mfa_required=MfaRequired.OFF)))
    assert await other.policy.current() == new
    assert len(await mfa.audit(AuditFilter(event="policy_changed"))) == 2


async def test_initial_policy_comes_from_config(store: Any, mfa_factory: Any, config: Any) -> None:
    m = await mfa_factory(store=store, config=dataclasses.replace(
        config, policy=PolicySettings(mfa_required=MfaRequired.ENROLLED, remember_device=True, remember_days=3)))
    stored = await store.load_policy()
    assert stored is not None and stored.mfa_required is MfaRequired.ENROLLED and stored.remember_days == 3
    assert await m.policy.current() == stored


@pytest.mark.parametrize(("changes", "field"), [
    ({"mfa_required": "sometimes"}, "mfa_required"),
    ({"allowed_methods": []}, "allowed_methods"),
    ({"allowed_methods": ["totp", "sms"]}, "allowed_methods"),
    ({"remember_days": 0}, "remember_days"),
    ({"remember_days": 366}, "remember_days"),
    ({"sensitive_reauth_seconds": 5}, "sensitive_reauth_seconds"),
    ({"no_such_field": 1}, "no_such_field"),
])
async def test_bad_policy_changes_are_refused_and_write_nothing(mfa: Mfa, db: Any, changes: dict[str, Any],
                                                                field: str) -> None:
    before = await db.counts()
    current = await mfa.policy.current()
    with pytest.raises(InvalidInput) as err:
        await mfa.policy.update(actor="ops", **changes)
    assert err.value.field == field
    assert await db.counts() == before
    assert await mfa.policy.current() == current == await mfa.store.load_policy()


# --- remembered devices -----------------------------------------------------------------------
async def test_no_token_unless_the_policy_allows_remembering(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    done = await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT, remember=True)
    assert done.accepted and done.remembered_token is None
    assert await mfa.store.list_remembered(alice.user.id, alice.clock.now()) == []


async def test_remembered_device_skips_the_second_factor_and_rotates(mfa: Mfa, enrol: Any, clock: Any,
                                                                     db: Any) -> None:
    await mfa.policy.update(actor="ops", remember_device=True)
    alice = await enrol("alice")
    token = await remembered_token(mfa, alice)
    prefix, series, counter, secret = token.split(".")
    assert (prefix, counter) == ("rd1", "1") and len(secret) >= 43  # 256 bits
    listed = await mfa.store.list_remembered(alice.user.id, clock.now())
    assert [(r.series, r.label, r.expires_at) for r in listed] == [(series, "laptop", clock.now() + timedelta(days=7))]
    # Only a hash is stored.
    stored = await db.rows("SELECT token_hash FROM remembered")
    assert secret not in str([tuple(r) for r in stored]) and token not in str([tuple(r) for r in stored])

    clock.advance(3600)
    allowed = await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=token)
    assert allowed.outcome is Outcome.ALLOWED and allowed.reason is Reason.REMEMBERED
    rotated = allowed.remembered_token
    assert rotated is not None and rotated != token and rotated.split(".")[1:3] == [series, "2"]
    again = await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=rotated)
    assert again.outcome is Outcome.ALLOWED and again.remembered_token is not None
    # The password is still checked.
    assert (await begin(mfa.signin, "alice", "wrong", ATTEMPT, remembered_token=again.remembered_token)).outcome \
        is Outcome.REFUSED


async def test_reusing_an_old_token_revokes_the_whole_series(mfa: Mfa, enrol: Any, clock: Any) -> None:
    await mfa.policy.update(actor="ops", remember_device=True)
    alice = await enrol("alice")
    token = await remembered_token(mfa, alice)
    rotated = (await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=token)).remembered_token
    assert rotated is not None

    stale = await begin(mfa.signin, "alice", alice.password, Attempt(protocol="test", source="203.0.113.5"),
                                   remembered_token=token)  # the copied token
    assert stale.outcome is Outcome.SECOND_FACTOR_REQUIRED
    assert await mfa.store.list_remembered(alice.user.id, clock.now()) == []
    theft = await mfa.audit(AuditFilter(event="remembered_device"))
    assert [(r.event.outcome, r.event.source) for r in theft] == [("revoked", "203.0.113.5")]
    # The legitimate holder's current token died with the series.
    after = await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=rotated)
    assert after.outcome is Outcome.SECOND_FACTOR_REQUIRED and after.remembered_token is None


async def test_tokens_are_bound_to_their_user(mfa: Mfa, enrol: Any, clock: Any) -> None:
    await mfa.policy.update(actor="ops", remember_device=True)
    alice = await enrol("alice")
    bob = await enrol("bob")
    token = await remembered_token(mfa, alice)
    as_bob = await begin(mfa.signin, "bob", bob.password, ATTEMPT, remembered_token=token)
    assert as_bob.outcome is Outcome.SECOND_FACTOR_REQUIRED
    # Bob presenting it neither works nor destroys Alice's series.
    assert (await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=token)).allowed


@pytest.mark.parametrize("garbage", ["", "rd1", "rd1...", "rd1.x.notanumber.y", "rd2.a.1.b", "x" * 500,
                                     "rd1.s.1.ünïcode"])
async def test_malformed_tokens_just_mean_a_second_factor(mfa: Mfa, enrol: Any, garbage: str) -> None:
    await mfa.policy.update(actor="ops", remember_device=True)
    alice = await enrol("alice")
    result = await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=garbage)
    assert result.outcome is Outcome.SECOND_FACTOR_REQUIRED


async def test_token_expires_after_the_policys_days(mfa: Mfa, enrol: Any, clock: Any) -> None:
    await mfa.policy.update(actor="ops", remember_device=True, remember_days=3)
    alice = await enrol("alice")
    token = await remembered_token(mfa, alice)
    clock.advance(3 * 86400 - 1)
    token = (await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=token)).remembered_token
    assert token is not None
    clock.advance(1)
    late = await begin(mfa.signin, "alice", alice.password, ATTEMPT, remembered_token=token)
    assert late.outcome is Outcome.SECOND_FACTOR_REQUIRED


@pytest.mark.parametrize("change", ["password", "unbind", "policy_off", "disable"])
async def test_tokens_are_revoked_when_something_changes(mfa: Mfa, enrol: Any, bind: Any, clock: Any,
                                                         change: str) -> None:
    await mfa.policy.update(actor="ops", remember_device=True)
    alice = await enrol("alice")
    bob = await enrol("bob")
    token = await remembered_token(mfa, alice)
    bobs = await remembered_token(mfa, bob)
    password = alice.password
    if change == "password":
        password = "a new password 123"
        await mfa.users.set_password("alice", password, actor="alice")
    elif change == "unbind":
        await mfa.devices.unbind("alice", alice.device.id, actor="ops", as_admin=True)
        pending = await bind("alice")  # a new device, so the token would otherwise be usable
        await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())
    elif change == "policy_off":
        await mfa.policy.update(actor="ops", remember_device=False)
        await mfa.policy.update(actor="ops", remember_device=True)
    else:
        await mfa.users.set_disabled("alice", True, actor="ops")
        await mfa.users.set_disabled("alice", False, actor="ops")
    assert await mfa.store.list_remembered(alice.user.id, clock.now()) == []
    result = await begin(mfa.signin, "alice", password, ATTEMPT, remembered_token=token)
    assert result.outcome is Outcome.SECOND_FACTOR_REQUIRED
    bob_kept = change != "policy_off"  # turning remembering off revokes everybody's
    assert bool(await mfa.store.list_remembered(bob.user.id, clock.now())) is bob_kept
    assert (await begin(mfa.signin, "bob", bob.password, ATTEMPT, remembered_token=bobs)).allowed is bob_kept
