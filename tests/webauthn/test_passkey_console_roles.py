"""The policy's ``roles_need_passkey`` through the real gRPC servicers (both store engines):
a console role works only in a session signed in with a passkey, each Admin call checks it,
and a sensitive call needs a passkey step-up — a TOTP one does not count. Sessions record how
they signed in (``user_sessions.signed_in_with``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from relying import ORIGIN, PASSWORD, GrpcRelying
from softauthn import SoftAuthenticator, dumps
from test_passkey_grpc import enrol_passkey

from mfad_client import (
    FailedPrecondition,
    InvalidArgument,
    Method,
    PermissionDenied,
    SignInOutcome,
    StaffRole,
    StepUpOutcome,
)


async def with_totp(g: GrpcRelying, username: str, totp_code: Callable[..., str]) -> bytes:
    """Bind a TOTP device for ``username`` through the Admin API; its key."""
    prov = await g.admin.admin.bind_totp(username)
    key = base64.b32decode(prov.secret_base32 + "=" * (-len(prov.secret_base32) % 8))
    await g.admin.admin.confirm_totp(username, prov.device_id, totp_code(key, g.wa.clock.now()))
    return key


async def passkey_session(g: GrpcRelying, username: str, auth: SoftAuthenticator) -> str:
    portal = g.portal
    begun = await portal.auth.begin_sign_in(username, PASSWORD)
    options = json.loads((await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY)).request_options_json)
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY,
                                                assertion_json=dumps(auth.get(options, ORIGIN)))
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    return done.session.token


async def totp_session(g: GrpcRelying, username: str, code: str) -> str:
    portal = g.portal
    begun = await portal.auth.begin_sign_in(username, PASSWORD)
    assert Method.TOTP in begun.methods
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=code)
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    return done.session.token


async def test_roles_need_a_passkey_sign_in_and_a_passkey_step_up(wa_grpc: GrpcRelying,
                                                                  totp_code: Callable[..., str]) -> None:
    g = wa_grpc
    clock = g.wa.clock
    key = SoftAuthenticator()
    await enrol_passkey(g, "ada", key)
    totp = await with_totp(g, "ada", totp_code)
    await g.admin.admin.set_role("ada", StaffRole.ADMIN)

    clock.advance(30)
    by_totp = await totp_session(g, "ada", totp_code(totp, clock.now()))
    # Off (the default): the role works whatever the second factor was.
    assert (await g.portal.admin_as(by_totp).console_access()).role is StaffRole.ADMIN

    policy = await g.admin.admin.set_policy(roles_need_passkey=True)
    assert policy.roles_need_passkey and not policy.email_recovery
    assert (await g.admin.admin.get_policy()).roles_need_passkey
    for call in (g.portal.admin_as(by_totp).console_access(), g.portal.admin_as(by_totp).list_users(),
                 g.portal.admin_as(by_totp).set_policy(remember_days=3)):
        with pytest.raises(PermissionDenied):  # the same session, now refused on each call
            await call
    assert (await g.portal.enrollment.list_devices(by_totp)).devices  # self-service goes on

    by_passkey = await passkey_session(g, "ada", key)
    admin = g.portal.admin_as(by_passkey)
    assert (await admin.console_access()).role is StaffRole.ADMIN
    assert (await admin.set_policy(remember_days=3)).remember_days == 3  # the sign-in's passkey is fresh

    clock.advance(301)  # past sensitive_reauth_seconds: a step-up is owed
    with pytest.raises(FailedPrecondition):
        await admin.set_policy(remember_days=4)
    clock.advance(30)
    stepped = await g.portal.auth.verify_sensitive(code=totp_code(totp, clock.now()), operation="console",
                                                   session=by_passkey)
    assert stepped.outcome is StepUpOutcome.VERIFIED
    with pytest.raises(FailedPrecondition):  # a TOTP step-up does not count for a role that needs a passkey
        await admin.set_policy(remember_days=4)
    started = await g.portal.auth.verify_sensitive(operation="console", method=Method.PASSKEY, session=by_passkey)
    assert started.challenge is not None
    proof = dumps(key.get(json.loads(started.challenge.request_options_json), ORIGIN))
    verified = await g.portal.auth.verify_sensitive(operation="console", method=Method.PASSKEY, session=by_passkey,
                                                    challenge_id=started.challenge.challenge_id, assertion_json=proof)
    assert verified.outcome is StepUpOutcome.VERIFIED
    assert (await admin.set_policy(remember_days=4)).remember_days == 4

    denied = await g.admin.admin.query_audit(username="ada", event="console_denied")
    reasons = {e.reason for e in denied.events}
    assert reasons == {"role=admin needs=passkey_sign_in signed_in_with=totp"}, reasons
    assert len(denied.events) == 3
    async with g.wa.store.read() as tx:  # type: ignore[attr-defined]
        rows = await tx.fetch("SELECT signed_in_with, second_factor_with FROM user_sessions ORDER BY created_at")
    assert [(r["signed_in_with"], r["second_factor_with"]) for r in rows][-2:] == [
        ("totp", "totp"), ("passkey", "passkey")]


async def test_roles_need_passkey_needs_passkeys_allowed(wa_grpc: GrpcRelying) -> None:
    admin = wa_grpc.admin.admin
    with pytest.raises(InvalidArgument):
        await admin.set_policy(allowed_methods=[Method.TOTP, Method.EMAIL], roles_need_passkey=True)
    await admin.set_policy(roles_need_passkey=True)
    with pytest.raises(InvalidArgument):  # and passkeys cannot be taken away while it is on
        await admin.set_policy(allowed_methods=[Method.TOTP])
    assert Method.PASSKEY in (await admin.get_policy()).allowed_methods


async def test_a_first_passkey_bound_at_sign_in_counts_as_a_passkey_sign_in(wa_grpc: GrpcRelying,
                                                                          db: Any) -> None:
    g = wa_grpc
    await g.admin.admin.set_policy(roles_need_passkey=True)
    await enrol_passkey(g, "bea", SoftAuthenticator())
    rows = await db.rows("SELECT signed_in_with, scope FROM user_sessions WHERE scope = 'full'")
    assert [(r["signed_in_with"], r["scope"]) for r in rows] == [("passkey", "full")]
