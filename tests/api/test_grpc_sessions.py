"""User sessions through the real servicers: issue, scope, caller binding, expiry, step-up, revocation.

Real store (both engines), the fixed clock, the typed client over loopback gRPC.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401

from mfad.core.clock import FixedClock
from mfad.core.model import Role
from mfad_client import (
    ClientInfo,
    FailedPrecondition,
    InvalidArgument,
    Method,
    NotFound,
    PermissionDenied,
    SessionScope,
    SignInOutcome,
    StepUpOutcome,
    Unauthenticated,
)
from mfad_client import types as t

Enrol = Callable[..., Awaitable[Any]]


async def full_session(g: GrpcMfad, user: Any, *, steps: int = 1, remember: bool = False) -> t.Completion:
    """Sign ``user`` (an Enrolled) in through the portal with the code ``steps`` periods ahead."""
    portal = g.portal
    begun = await portal.auth.begin_sign_in(user.username, user.password)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    assert begun.methods == (Method.TOTP,) and begun.session is None
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP,
                                                code=user.code(steps),
                                                remember_device=remember, client=ClientInfo(user_agent="Firefox"))
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    return done


async def test_first_sign_in_gets_an_enrolment_session_that_binds_one_device(
        grpc_mfad: GrpcMfad, clock: FixedClock, db: Any, totp_code: Callable[..., str]) -> None:
    g = grpc_mfad
    await g.mfa.users.create("erin", "pw-erin-0123456")
    portal = g.portal
    begun = await portal.auth.begin_sign_in("erin", "pw-erin-0123456")
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED
    assert begun.methods == (Method.PASSKEY, Method.TOTP) and begun.challenge_id == ""
    assert begun.session is not None and begun.session.scope is SessionScope.ENROLMENT
    assert begun.session.expires_at == clock.now() + timedelta(seconds=900)
    session = begun.session.token

    listing = await portal.enrollment.list_devices(session)
    assert listing.devices == () and listing.lockout_risk
    for forbidden in (portal.enrollment.list_remembered(session), portal.enrollment.unbind(session, "1")):
        with pytest.raises(PermissionDenied):
            await forbidden
    with pytest.raises(PermissionDenied):  # step-up needs a completed sign-in
        await portal.auth.verify_sensitive(code="123456", operation="unbind_device", session=session)

    prov = await portal.enrollment.begin_totp_binding(session, "phone")
    key = base64.b32decode(prov.secret_base32 + "=" * (-len(prov.secret_base32) % 8))
    code = totp_code(key, clock.now())
    bound = await portal.enrollment.confirm_totp(session, prov.device_id, code)
    device, after = bound.device, bound.listing
    assert device.method is Method.TOTP and device.name == "phone" and [d.id for d in after.devices] == [device.id]
    # The device was just proved: the sign-in is complete, with a full session in place of the enrolment one.
    assert bound.session is not None and bound.session.scope is SessionScope.FULL
    assert (await portal.enrollment.list_remembered(bound.session.token)) == ()

    with pytest.raises(Unauthenticated):  # the enrolment session is over
        await portal.enrollment.list_devices(session)
    assert (await portal.auth.begin_sign_in("erin", "pw-erin-0123456")).outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    rows = await db.rows("SELECT detail, actor FROM audit WHERE event = 'session_created' ORDER BY id")
    assert [(r["detail"], r["actor"]) for r in rows] == [("scope=enrolment via=no_device", "test-portal"),
                                                        ("scope=full via=enrolment", "test-portal")]


async def test_a_full_session_works_only_for_its_caller_and_until_it_expires(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock, db: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    done = await full_session(g, alice)
    assert done.username == "alice" and done.remembered is None
    assert done.session is not None and done.session.scope is SessionScope.FULL
    token = done.session.token
    assert len((await g.portal.enrollment.list_devices(token)).devices) == 1
    # Stored only as a hash.
    assert await db.scalar("SELECT count(*) FROM user_sessions WHERE id_hash = $1", token) == 0
    assert await db.scalar("SELECT count(*) FROM user_sessions") == 1

    other_portal = g.client(token=await g.new_token("portal-2", Role.PORTAL))
    for client in (other_portal, g.admin):
        with pytest.raises(Unauthenticated) as refused:
            await client.enrollment.list_devices(token)
        assert "missing, expired or revoked" in refused.value.details
    with pytest.raises(Unauthenticated):
        await g.portal.enrollment.list_devices(token[:-1] + ("A" if token[-1] != "A" else "B"))

    clock.advance(900)
    with pytest.raises(Unauthenticated):
        await g.portal.enrollment.list_devices(token)


async def test_setting_the_password_or_disabling_the_user_ends_every_session(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock, db: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice", password="the first password")
    first = await full_session(g, alice)
    assert first.session is not None
    assert await g.admin.admin.set_password("alice", "a second password") == 0
    with pytest.raises(Unauthenticated):
        await g.portal.enrollment.list_devices(first.session.token)

    clock.advance(30)
    alice.password = "a second password"
    again = await full_session(g, alice)
    assert again.session is not None
    await g.admin.admin.disable_user("alice", reason="left the company")
    with pytest.raises(Unauthenticated):
        await g.portal.enrollment.list_devices(again.session.token)
    assert await db.scalar("SELECT count(*) FROM user_sessions") == 0
    assert (await g.portal.auth.begin_sign_in("alice", "a second password")).outcome is SignInOutcome.REFUSED
    reasons = await db.rows("SELECT reason FROM audit WHERE event = 'user_disabled'")
    assert [r["reason"] for r in reasons] == ["left the company"]


async def test_deleting_a_user_removes_devices_sessions_and_remembered_devices_but_not_the_audit(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock, db: Any) -> None:
    g = grpc_mfad
    await g.mfa.policy.update(actor="test", remember_device=True)
    alice = await enrol("alice")
    done = await full_session(g, alice, remember=True)
    assert done.session is not None and done.remembered is not None
    await g.portal.auth.begin_sign_in("alice", alice.password)  # an open challenge
    await enrol("bob")
    audit_before = await db.scalar("SELECT count(*) FROM audit WHERE user_id = $1", alice.user.id)
    assert audit_before > 0

    with pytest.raises(NotFound):
        await g.admin.admin.delete_user("nobody")
    assert await g.admin.admin.delete_user("ALICE", reason="left the company") == 1
    with pytest.raises(Unauthenticated):
        await g.portal.enrollment.list_devices(done.session.token)
    with pytest.raises(NotFound):
        await g.admin.admin.get_user("alice")
    uid = alice.user.id
    for table in ("users", "devices", "user_sessions", "remembered", "challenges", "user_limits"):
        column = "id" if table == "users" else "user_id"
        assert await db.scalar(f"SELECT count(*) FROM {table} WHERE {column} = $1", uid) == 0, table
    rows = await db.rows("SELECT event, actor, reason, detail FROM audit WHERE user_id = $1 ORDER BY id", uid)
    assert len(rows) == audit_before + 1
    assert (rows[-1]["event"], rows[-1]["reason"], rows[-1]["detail"]) == ("user_deleted", "left the company",
                                                                            "devices=1")
    assert (await g.admin.admin.get_user("bob")).devices.devices  # nobody else is touched
    again = await g.admin.admin.create_user("alice")  # the name is free again: a new user, no devices
    assert again.id != str(uid) and not (await g.admin.admin.list_devices("alice")).devices


async def test_unbinding_needs_a_fresh_second_factor_which_step_up_records(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock, db: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    done = await full_session(g, alice)
    assert done.session is not None
    token, device_id = done.session.token, str(alice.device.id)

    clock.advance(301)  # the policy's sensitive_reauth_seconds is 300
    with pytest.raises(FailedPrecondition) as stale:
        await g.portal.enrollment.unbind(token, device_id)
    assert "VerifySensitive" in stale.value.details
    refused = await g.portal.auth.verify_sensitive(code=next(alice.wrong_codes()),
                                                   operation="unbind_device", session=token)
    assert refused == t.StepUp(outcome=StepUpOutcome.REFUSED)
    step = await g.portal.auth.verify_sensitive(code=alice.code(), operation="unbind_device",
                                                session=token)
    assert step.outcome is StepUpOutcome.VERIFIED
    assert step.verified_at == clock.now() and step.valid_until == clock.now() + timedelta(seconds=300)
    left = await g.portal.enrollment.unbind(token, device_id)
    assert left.devices == () and left.lockout_risk
    rows = await db.rows("SELECT event, detail, actor FROM audit WHERE event IN ('step_up', 'device_unbound') "
                         "ORDER BY id")
    assert [(r["event"], r["actor"]) for r in rows] == [("step_up", "test-portal"), ("device_unbound", "user")]
    assert "operation=unbind_device session=True" in rows[0]["detail"]


async def test_step_up_without_a_session_names_the_user_and_refuses_a_replay(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    service = g.service
    code = alice.code(1)
    ok = await service.auth.verify_sensitive(username="alice", code=code, operation="rotate-keys")
    assert ok.outcome is StepUpOutcome.VERIFIED and ok.valid_until == clock.now() + timedelta(seconds=300)
    again = await service.auth.verify_sensitive(username="alice", code=code, operation="rotate-keys")
    assert again.outcome is StepUpOutcome.REFUSED
    nobody = await service.auth.verify_sensitive(username="nobody", code=code, operation="rotate-keys")
    assert nobody == again


async def test_self_service_off_refuses_full_sessions_but_not_a_first_enrolment(
        grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    done = await full_session(g, alice)
    assert done.session is not None
    policy = await g.admin.admin.set_policy(self_service=False)
    assert policy.self_service is False
    seen = await g.portal.enrollment.devices(done.session.token)  # read-only: looking is still allowed
    assert seen.self_service is False and [d.method for d in seen.listing.devices] == [Method.TOTP]
    with pytest.raises(PermissionDenied) as denied:
        await g.portal.enrollment.list_remembered(done.session.token)
    assert "manage their own devices" in denied.value.details
    with pytest.raises(PermissionDenied):
        await g.portal.enrollment.unbind(done.session.token, seen.listing.devices[0].id)

    await g.mfa.users.create("newbie", "pw-0123456789")
    begun = await g.portal.auth.begin_sign_in("newbie", "pw-0123456789")
    assert begun.session is not None and begun.session.scope is SessionScope.ENROLMENT
    assert (await g.portal.enrollment.list_devices(begun.session.token)).devices == ()
    assert (await g.portal.enrollment.begin_totp_binding(begun.session.token)).device_id


async def test_only_service_and_admin_callers_may_vouch_for_the_first_factor(
        grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    await enrol("alice")
    with pytest.raises(PermissionDenied) as denied:
        await g.portal.auth.begin_sign_in("alice", None)
    assert "password" in denied.value.details
    for caller in (g.service, g.admin):
        assert (await caller.auth.begin_sign_in("alice", None)).outcome is SignInOutcome.SECOND_FACTOR_REQUIRED


async def test_refusals_are_identical_whatever_the_reason(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    await enrol("dave")
    await g.admin.admin.disable_user("dave")
    portal = g.portal
    answers = [await portal.auth.begin_sign_in("nobody", "pw"),
               await portal.auth.begin_sign_in("alice", "wrong"),
               await portal.auth.begin_sign_in("dave", alice.password)]
    assert answers == [t.SignIn(outcome=SignInOutcome.REFUSED)] * 3
    begun = await portal.auth.begin_sign_in("alice", alice.password)
    wrong = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP,
                                                 code=next(alice.wrong_codes()))
    unknown = await portal.auth.complete_challenge("no-such-challenge", Method.TOTP, code=alice.code(1))
    assert wrong == unknown == t.Completion(outcome=SignInOutcome.REFUSED)


async def test_remembered_devices_skip_the_second_factor_rotate_and_can_be_revoked(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    no_policy = await full_session(g, alice, remember=True)
    assert no_policy.remembered is None  # the policy does not allow remembering yet
    await g.admin.admin.set_policy(remember_device=True, remember_days=3)
    clock.advance(30)
    done = await full_session(g, alice, remember=True)
    assert done.remembered is not None and done.remembered.expires_at == clock.now() + timedelta(days=3)
    first = done.remembered.token

    skipped = await g.portal.auth.begin_sign_in("alice", alice.password, remembered_token=first)
    assert skipped.outcome is SignInOutcome.ALLOWED and skipped.username == "alice"
    assert skipped.session is not None and skipped.session.scope is SessionScope.FULL
    assert skipped.remembered is not None and skipped.remembered.token != first
    assert skipped.remembered.expires_at == done.remembered.expires_at

    assert done.session is not None
    mine = await g.portal.enrollment.list_remembered(done.session.token)
    assert [r.label for r in mine] == ["Firefox"]
    assert await g.admin.admin.list_remembered("alice") == mine
    assert await g.portal.enrollment.revoke_remembered(done.session.token, mine[0].id) == 1
    assert await g.admin.admin.list_remembered("alice") == ()
    after = await g.portal.auth.begin_sign_in("alice", alice.password,
                                              remembered_token=skipped.remembered.token)
    assert after.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED


async def test_sign_out_ends_the_session_in_mfad(grpc_mfad: GrpcMfad, enrol: Enrol, db: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    done = await full_session(g, alice)
    assert done.session is not None
    token = done.session.token
    assert (await g.portal.enrollment.devices(token)).self_service is True
    with pytest.raises(Unauthenticated):  # another caller cannot end it
        await g.admin.enrollment.end_session(token)
    await g.portal.enrollment.end_session(token)
    for call in (g.portal.enrollment.list_devices(token), g.portal.enrollment.end_session(token)):
        with pytest.raises(Unauthenticated):
            await call
    rows = await db.rows("SELECT username, actor FROM audit WHERE event = 'session_ended'")
    assert [(r["username"], r["actor"]) for r in rows] == [("alice", "test-portal")]


async def test_sign_in_says_whether_and_how_long_a_device_may_be_remembered(
        grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    first = await g.portal.auth.begin_sign_in(alice.username, alice.password)
    assert first.remember_days == 0 and first.masked_email == ""  # no security email to name
    await g.admin.admin.set_policy(remember_device=True, remember_days=12)
    assert (await g.portal.auth.begin_sign_in(alice.username, alice.password)).remember_days == 12
    refused = await g.portal.auth.begin_sign_in(alice.username, "wrong")
    assert refused.outcome is SignInOutcome.REFUSED and refused.remember_days == 0


async def test_a_bad_operation_name_is_invalid_argument_before_any_factor_is_checked(
        grpc_mfad: GrpcMfad, enrol: Enrol, db: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    done = await full_session(g, alice)
    assert done.session is not None
    code = alice.code(2)
    for bad in ("Unbind_Device", "unbind device", "x" * 65, "-leading", "änderung"):
        for call in (g.portal.auth.verify_sensitive(code=code, operation=bad, session=done.session.token),
                     g.portal.auth.verify_sensitive(method=Method.PASSKEY, operation=bad, session=done.session.token),
                     g.service.auth.verify_sensitive(username="alice", code=code, operation=bad)):
            with pytest.raises(InvalidArgument) as refused:
                await call
            assert refused.value.details.startswith("operation: must be"), bad
    assert not await db.rows("SELECT id FROM audit WHERE event = 'step_up'")
    # The code was never tried: it still works for a well-named operation.
    ok = await g.service.auth.verify_sensitive(username="alice", code=code, operation="unbind_device")
    assert ok.outcome is StepUpOutcome.VERIFIED
