"""Passkeys and U2F keys through the real gRPC servicers (both store engines): first-sign-in
enrolment, sign-in, usernameless sign-in, listings with passkey details, refusals and bad
input mapped to their status codes, U2F import → appid sign-in → upgrade, and
``mfactl passkey list``, and a passkey step-up that lets a passkey-only user unbind a device."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from mfactl_runner import run_mfactl
from relying import APP_ID, ORIGIN, PASSWORD, GrpcRelying
from softauthn import SoftAuthenticator, b64u, dumps, unb64u

from mfad.core.model import Role

from mfad_client import (
    ClientInfo,
    FailedPrecondition,
    InvalidArgument,
    Method,
    PermissionDenied,
    SessionScope,
    SignInOutcome,
    StepUpOutcome,
)

CLIENT = ClientInfo(ip="198.51.100.7", user_agent="Chromium")


async def enrol_passkey(g: GrpcRelying, username: str, auth: SoftAuthenticator) -> str:
    """First sign-in of a new user: bind a passkey with the enrolment session; the device id."""
    await g.admin.admin.create_user(username, PASSWORD)
    portal = g.portal
    begun = await portal.auth.begin_sign_in(username, PASSWORD, client=CLIENT)
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and Method.PASSKEY in begun.methods
    assert begun.session is not None and begun.session.scope is SessionScope.ENROLMENT
    reg = await portal.enrollment.begin_passkey_binding(begun.session.token, "laptop")
    assert reg.expires_at == g.wa.clock.now() + timedelta(seconds=300)
    options = json.loads(reg.creation_options_json)
    assert options["authenticatorSelection"]["userVerification"] == "required"
    device, listing = await portal.enrollment.complete_passkey_binding(
        begun.session.token, reg.registration_id, dumps(auth.create(options, ORIGIN)), client=CLIENT)
    assert device.method is Method.PASSKEY and device.security_level == 3 and device.passkey is not None
    assert [d.id for d in listing.devices] == [device.id] and listing.lockout_risk
    return device.id


async def test_enrol_sign_in_and_list_a_passkey(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    auth = SoftAuthenticator(backup_eligible=True, backup_state=True)
    device_id = await enrol_passkey(g, "alice", auth)
    portal = g.portal
    begun = await portal.auth.begin_sign_in("alice", PASSWORD, client=CLIENT)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED and begun.methods == (Method.PASSKEY, Method.APPROVAL)
    details = await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY, client=CLIENT)
    assert details.method is Method.PASSKEY and details.expires_at == g.wa.clock.now() + timedelta(seconds=300)
    options = json.loads(details.request_options_json)
    assert [unb64u(c["id"]) for c in options["allowCredentials"]] == [auth.credentials[0].credential_id]
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY,
                                                assertion_json=dumps(auth.get(options, ORIGIN)), client=CLIENT)
    assert done.outcome is SignInOutcome.ALLOWED and done.username == "alice" and done.session is not None
    listing = await portal.enrollment.list_devices(done.session.token)
    [device] = listing.devices
    assert device.id == device_id and device.last_used_at == g.wa.clock.now()
    assert device.passkey is not None and device.passkey.backup_eligible and device.passkey.backup_state
    assert device.passkey.aaguid == "6d666164-736f-6674-6175-746800000001" and device.u2f is None
    admin_view = await g.admin.admin.list_devices("alice")
    assert admin_view.devices[0].passkey == device.passkey


async def test_usernameless_sign_in_over_grpc(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    auth = SoftAuthenticator()
    await enrol_passkey(g, "alice", auth)
    portal = g.portal
    begun = await portal.auth.begin_sign_in("", None, client=CLIENT)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED and begun.methods == (Method.PASSKEY,)
    assert begun.session is None and begun.username == ""
    details = await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY)
    options = json.loads(details.request_options_json)
    assert "allowCredentials" not in options
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY,
                                                assertion_json=dumps(auth.get(options, ORIGIN)))
    assert done.outcome is SignInOutcome.ALLOWED and done.username == "alice" and done.session is not None
    with pytest.raises(PermissionDenied):  # a portal still sends a password with a username
        await portal.auth.begin_sign_in("alice", None)


async def test_refusals_look_the_same_and_bad_input_is_invalid_argument(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    auth = SoftAuthenticator()
    await enrol_passkey(g, "alice", auth)
    portal = g.portal
    refused = []
    for bend in ({"origin": "https://evil.example.net"}, {"uv": False}, {"corrupt_signature": True}):
        begun = await portal.auth.begin_sign_in("alice", PASSWORD)
        options = json.loads((await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY))
                             .request_options_json)
        origin = bend.pop("origin", ORIGIN)
        refused.append(await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY,
                                                            assertion_json=dumps(auth.get(options, origin, **bend))))
    assert {r.outcome for r in refused} == {SignInOutcome.REFUSED}
    assert len({(r.username, r.session) for r in refused}) == 1
    begun = await portal.auth.begin_sign_in("alice", PASSWORD)
    await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY)
    for bad in ('{"rawId": 12345}', "not json", json.dumps({"id": "AA", "rawId": "AA", "response": {
            "clientDataJSON": b64u(b"{" * 3000), "authenticatorData": "AA", "signature": "AA"}})):
        with pytest.raises(InvalidArgument):
            await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY, assertion_json=bad)
    with pytest.raises(InvalidArgument):  # over the contract's 16 KiB
        await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY, assertion_json="x" * 17000)


async def test_registration_refusals_are_failed_precondition(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    await g.admin.admin.create_user("bob", PASSWORD)
    portal = g.portal
    session = (await portal.auth.begin_sign_in("bob", PASSWORD)).session
    assert session is not None
    reg = await portal.enrollment.begin_passkey_binding(session.token, "key")
    with pytest.raises(FailedPrecondition, match="did not verify you"):
        await portal.enrollment.complete_passkey_binding(
            session.token, reg.registration_id, dumps(SoftAuthenticator().create(reg.creation_options_json,
                                                                                 ORIGIN, uv=False)))
    reg = await portal.enrollment.begin_passkey_binding(session.token, "key")
    with pytest.raises(InvalidArgument):
        await portal.enrollment.complete_passkey_binding(session.token, reg.registration_id, '{"rawId": "AA"}')
    assert (await portal.enrollment.list_devices(session.token)).devices == ()


async def test_u2f_import_appid_sign_in_and_upgrade(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    admin = g.admin.admin
    await admin.create_user("carol", PASSWORD)
    legacy = SoftAuthenticator(u2f_only=True)
    handle, point, old_cred = legacy.u2f_register(APP_ID)
    device, listing = await admin.import_u2f("carol", key_handle=handle, public_key=point, app_id=APP_ID, counter=9,
                                             name="old key")
    assert device.method is Method.U2F and device.security_level == 2
    assert device.u2f is not None and device.u2f.app_id == APP_ID and device.passkey is None
    old_cred.sign_count = 9

    portal = g.portal
    begun = await portal.auth.begin_sign_in("carol", PASSWORD)
    assert begun.methods == (Method.U2F,)
    details = await portal.auth.start_challenge(begun.challenge_id, Method.U2F)
    options = json.loads(details.request_options_json)
    assert options["extensions"] == {"appid": APP_ID} and details.method is Method.U2F
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.U2F,
                                                assertion_json=dumps(legacy.get(options, ORIGIN)))
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    session = done.session.token

    # The key speaks only U2F: the upgrade says so and leaves it as it was.
    reg = await portal.enrollment.begin_u2f_upgrade(session, device.id)
    with pytest.raises(FailedPrecondition, match=r"only U2F \(CTAP1\).*cannot become a passkey"):
        await portal.enrollment.complete_u2f_upgrade(
            session, reg.registration_id, dumps(legacy.create(reg.creation_options_json, ORIGIN,
                                                              attestation="fido-u2f")))
    assert [d.method for d in (await portal.enrollment.list_devices(session)).devices] == [Method.U2F]

    # A CTAP2 authenticator completes it: the passkey replaces the U2F record.
    modern = SoftAuthenticator()
    reg = await portal.enrollment.begin_u2f_upgrade(session, device.id, "upgraded key")
    passkey, retired, after = await portal.enrollment.complete_u2f_upgrade(
        session, reg.registration_id, dumps(modern.create(reg.creation_options_json, ORIGIN)))
    assert retired == device.id and passkey.method is Method.PASSKEY and passkey.name == "upgraded key"
    assert [d.method for d in after.devices] == [Method.PASSKEY]

    # The old U2F credential is refused now.
    begun = await portal.auth.begin_sign_in("carol", PASSWORD)
    assert begun.methods == (Method.PASSKEY, Method.APPROVAL)
    with pytest.raises(FailedPrecondition):
        await portal.auth.start_challenge(begun.challenge_id, Method.U2F)
    options = json.loads((await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY)).request_options_json)
    forged = legacy.get(dict(options, extensions={"appid": APP_ID}), ORIGIN, credential=old_cred)
    refused = await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY, assertion_json=dumps(forged))
    assert refused.outcome is SignInOutcome.REFUSED
    audit = await admin.query_audit(username="carol", event="u2f_upgraded")
    assert audit.events[0].detail == f"retired={device.id} passkey={passkey.id}"


async def test_import_u2f_input_errors(wa_grpc: GrpcRelying) -> None:
    admin = wa_grpc.admin.admin
    await admin.create_user("dave", PASSWORD)
    with pytest.raises(InvalidArgument, match="public_key"):
        await admin.import_u2f("dave", key_handle=b"\x01" * 64, public_key=b"\x04" * 10, app_id=APP_ID)
    _, point, _ = SoftAuthenticator(u2f_only=True).u2f_register(APP_ID)
    with pytest.raises(InvalidArgument, match="app_id"):
        await admin.import_u2f("dave", key_handle=b"\x01" * 64, public_key=point, app_id="http://login.example.com")
    assert (await admin.list_devices("dave")).devices == ()


async def test_mfactl_passkey_list(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    auth = SoftAuthenticator(backup_eligible=True)
    await enrol_passkey(g, "erin", auth)
    legacy = SoftAuthenticator(u2f_only=True)
    handle, point, _ = legacy.u2f_register(APP_ID)
    await g.admin.admin.import_u2f("erin", key_handle=handle, public_key=point, app_id=APP_ID, name="yubikey")

    async def mfactl(*args: str) -> subprocess.CompletedProcess[str]:
        return await run_mfactl(g.address, g.tokens[Role.ADMIN], *args)

    text = await mfactl("passkey", "list", "erin")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "LEVEL", "NAME", "BACKUP", "CREATED", "LAST", "USED", "AUTHENTICATOR"]
    assert any("passkey" in ln and "laptop" in ln and "eligible" in ln and "6d666164-" in ln for ln in lines)
    assert any("u2f" in ln and "yubikey" in ln and f"appid {APP_ID}" in ln for ln in lines)
    as_json = await mfactl("--json", "passkey", "list", "erin")
    listing = json.loads(as_json.stdout)
    keys = listing["items"]
    assert listing["next_page_token"] == "" and listing["lockout_risk"] is False
    assert {k["method"] for k in keys} == {"passkey", "u2f"}
    by_method = {k["method"]: k for k in keys}
    assert by_method["passkey"]["passkey"]["backup_eligible"] is True
    assert by_method["u2f"]["u2f"] == {"app_id": APP_ID}
    missing = await mfactl("passkey", "list", "nobody")
    assert missing.returncode != 0


async def test_passkey_step_up_then_self_service_unbind(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    phone, laptop = SoftAuthenticator(), SoftAuthenticator()
    await enrol_passkey(g, "alice", phone)
    portal = g.portal
    begun = await portal.auth.begin_sign_in("alice", PASSWORD)
    options = json.loads((await portal.auth.start_challenge(begun.challenge_id, Method.PASSKEY)).request_options_json)
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.PASSKEY,
                                                assertion_json=dumps(phone.get(options, ORIGIN)))
    assert done.session is not None
    session = done.session.token
    reg = await portal.enrollment.begin_passkey_binding(session, "second")
    second, _ = await portal.enrollment.complete_passkey_binding(session, reg.registration_id,
                                                                 dumps(laptop.create(reg.creation_options_json,
                                                                                     ORIGIN)))
    g.wa.clock.advance(301)  # the sign-in's second factor is no longer fresh
    with pytest.raises(FailedPrecondition):
        await portal.enrollment.unbind(session, second.id)

    started = await portal.auth.verify_sensitive(operation="unbind_device", method=Method.PASSKEY, session=session)
    assert started.outcome is StepUpOutcome.CHALLENGE_STARTED and started.challenge is not None
    assert started.challenge.method is Method.PASSKEY
    step_options = json.loads(started.challenge.request_options_json)
    assert step_options["userVerification"] == "required"
    assertion = dumps(phone.get(step_options, ORIGIN))
    verified = await portal.auth.verify_sensitive(operation="unbind_device", method=Method.PASSKEY, session=session,
                                                  challenge_id=started.challenge.challenge_id,
                                                  assertion_json=assertion)
    assert verified.outcome is StepUpOutcome.VERIFIED and verified.valid_until is not None
    again = await portal.auth.verify_sensitive(operation="unbind_device", method=Method.PASSKEY, session=session,
                                               challenge_id=started.challenge.challenge_id, assertion_json=assertion)
    assert again.outcome is StepUpOutcome.REFUSED  # single use
    left = await portal.enrollment.unbind(session, second.id)
    assert [d.name for d in left.devices] == ["laptop"]
    audit = await g.admin.admin.query_audit(username="alice", event="step_up")
    assert audit.events[0].method == "passkey" and "operation=unbind_device" in audit.events[0].detail

    # No U2F key: refused like any other refusal. A proof without a challenge id: bad input.
    refused = await portal.auth.verify_sensitive(operation="unbind_device", method=Method.U2F, session=session)
    assert refused.outcome is StepUpOutcome.REFUSED
    with pytest.raises(InvalidArgument):
        await portal.auth.verify_sensitive(operation="x", method=Method.PASSKEY, session=session,
                                           assertion_json=assertion)


async def test_a_step_up_cannot_borrow_another_users_challenge(wa_grpc: GrpcRelying) -> None:
    g = wa_grpc
    alice_key, bob_key = SoftAuthenticator(), SoftAuthenticator()
    await enrol_passkey(g, "alice", alice_key)
    await enrol_passkey(g, "bob", bob_key)
    service = g.client(Role.SERVICE)
    bobs = await service.auth.verify_sensitive(operation="rotate", method=Method.PASSKEY, username="bob")
    assert bobs.challenge is not None
    proof = dumps(bob_key.get(json.loads(bobs.challenge.request_options_json), ORIGIN))
    borrowed = await service.auth.verify_sensitive(operation="rotate", method=Method.PASSKEY, username="alice",
                                                   challenge_id=bobs.challenge.challenge_id, assertion_json=proof)
    assert borrowed.outcome is StepUpOutcome.REFUSED
    nobody = await service.auth.verify_sensitive(operation="rotate", method=Method.PASSKEY, username="nobody")
    assert nobody.outcome is StepUpOutcome.REFUSED and nobody.challenge is None
