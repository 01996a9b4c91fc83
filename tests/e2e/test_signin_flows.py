"""Sign-in flows against a real ``mfad serve`` through the Python client, policy changed with
``mfactl`` in between (both engines): first-sign-in enrolment, policy changes taking
effect at once, remembered devices skipping the second factor until the password changes."""

from __future__ import annotations

import pytest
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import AuthenticatorApp

from mfad_client import (
    ClientInfo,
    Method,
    PermissionDenied,
    SessionScope,
    SignInOutcome,
    Unauthenticated,
)

pytestmark = pytest.mark.slow  # real mfad serve subprocesses
PASSWORD = "correct horse battery staple"


async def enrolled(mfad: Running, username: str) -> AuthenticatorApp:
    admin = mfad.client("ops").admin
    await admin.create_user(username, PASSWORD)
    provisioning = await admin.bind_totp(username)
    app = AuthenticatorApp(provisioning.secret_base32)
    await admin.confirm_totp(username, provisioning.device_id, await app.next_code())
    return app


async def policy(mfad: Running, *args: str) -> None:
    result = await mfad.mfactl("policy", "set", *args)
    assert result.code == 0, result


async def test_first_sign_in_enrols_through_the_portal(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    await mfad.client("ops").admin.create_user("erin", PASSWORD)
    portal = mfad.client("portal")
    begun = await portal.auth.begin_sign_in("erin", PASSWORD, client=ClientInfo(ip="2001:db8::7"))
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and begun.methods == (Method.PASSKEY, Method.TOTP)
    assert begun.session is not None and begun.session.scope is SessionScope.ENROLMENT
    enrolment = begun.session.token
    provisioning = await portal.enrollment.begin_totp_binding(enrolment, "phone")
    app = AuthenticatorApp(provisioning.secret_base32)
    device, listing = await portal.enrollment.confirm_totp_binding(enrolment, provisioning.device_id,
                                                                   await app.next_code())
    assert device.method is Method.TOTP and listing.lockout_risk
    with pytest.raises(Unauthenticated):
        await portal.enrollment.list_devices(enrolment)

    begun = await portal.auth.begin_sign_in("erin", PASSWORD)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    wrong = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=app.wrong_codes()[0])
    assert wrong.outcome is SignInOutcome.REFUSED and wrong.session is None
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=await app.next_code())
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    assert done.session.scope is SessionScope.FULL and done.username == "erin"
    assert [d.name for d in (await portal.enrollment.list_devices(done.session.token)).devices] == ["phone"]
    replay = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=app.last_code)
    assert replay.outcome is SignInOutcome.REFUSED
    assert await mfad.daemon.stop() == 0


async def test_policy_changes_take_effect_at_once(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    await enrolled(mfad, "frank")
    portal = mfad.client("portal")
    assert (await portal.auth.begin_sign_in("frank", PASSWORD)).outcome is SignInOutcome.SECOND_FACTOR_REQUIRED

    await policy(mfad, "--mfa-required", "off")
    allowed = await portal.auth.begin_sign_in("frank", PASSWORD)
    assert allowed.outcome is SignInOutcome.ALLOWED and allowed.session is not None
    session = allowed.session.token
    assert len((await portal.enrollment.list_devices(session)).devices) == 1

    await policy(mfad, "--self-service", "false")
    assert (await portal.enrollment.devices(session)).self_service is False  # looking stays allowed
    with pytest.raises(PermissionDenied):
        await portal.enrollment.list_remembered(session)

    await policy(mfad, "--mfa-required", "all", "--allowed-methods", "passkey,email", "--self-service", "true")
    shown = await mfad.mfactl("--json", "policy", "get")
    assert shown.json()["allowed_methods"] == ["email", "passkey"] and shown.json()["mfa_required"] == "all"
    # TOTP is no longer allowed: the user has nothing usable and must enrol a passkey.
    begun = await portal.auth.begin_sign_in("frank", PASSWORD)
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and begun.methods == (Method.PASSKEY,)
    assert begun.session is not None
    with pytest.raises(PermissionDenied):
        await portal.enrollment.begin_totp_binding(begun.session.token)

    bad = await mfad.mfactl("policy", "set", "--remember-days", "0")
    assert bad.code == 2 and "remember_days" in bad.err, bad
    audit = await mfad.client("ops").admin.query_audit(event="policy_changed")
    assert [e.actor for e in audit.events][:3] == ["ops", "ops", "ops"]
    assert await mfad.daemon.stop() == 0


async def test_a_remembered_device_skips_the_second_factor_until_the_password_changes(
        mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    app = await enrolled(mfad, "grace")
    await policy(mfad, "--remember-device", "true", "--remember-days", "7")
    portal = mfad.client("portal")
    browser = ClientInfo(ip="198.51.100.20", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
    begun = await portal.auth.begin_sign_in("grace", PASSWORD, client=browser)
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=await app.next_code(),
                                                remember_device=True, client=browser)
    assert done.outcome is SignInOutcome.ALLOWED and done.remembered is not None and done.session is not None

    skipped = await portal.auth.begin_sign_in("grace", PASSWORD, remembered_token=done.remembered.token,
                                              client=browser)
    assert skipped.outcome is SignInOutcome.ALLOWED and skipped.challenge_id == ""
    assert skipped.remembered is not None and skipped.remembered.token != done.remembered.token
    listed = await mfad.mfactl("--json", "remembered", "list", "grace")
    assert [r["label"] for r in listed.json()["items"]] == [browser.user_agent[:100]], listed

    changed = await mfad.mfactl("user", "set-password", "grace", "--password-stdin", stdin="a new password\n")
    assert changed.code == 0 and "1 remembered device(s) revoked" in changed.out, changed
    after = await portal.auth.begin_sign_in("grace", "a new password", remembered_token=skipped.remembered.token)
    assert after.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    with pytest.raises(Unauthenticated):  # the sessions went with the password
        await portal.enrollment.list_devices(skipped.session.token if skipped.session else "")
    old = await portal.auth.begin_sign_in("grace", PASSWORD)
    assert old.outcome is SignInOutcome.REFUSED
    empty = await mfad.mfactl("remembered", "list", "grace")
    assert "no remembered devices" in empty.out, empty
    assert await mfad.daemon.stop() == 0
