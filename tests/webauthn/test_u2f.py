"""Legacy U2F keys at core level, on both store engines: an import from an older system,
sign-in under the AppID (the ``appid`` extension), the counter guard, and the upgrade to a
passkey that retires the U2F record in the same transaction — or changes nothing."""

from __future__ import annotations

import json

import pytest
from relying import APP_ID, ATTEMPT, ORIGIN, PASSWORD, Relying
from softauthn import SoftAuthenticator, SoftCredential, unb64u

from mfad.core.errors import AlreadyExists, InvalidInput, PermissionDenied, PreconditionFailed
from mfad.core.model import Device, Method
from mfad.core.verification import Reason
from mfad.core.webauthn.registration import RegistrationRefused
from signin_calls import begin

#: From the U2F raw message formats example (published vector C7): a valid P-256 point.
C7_PUBLIC_KEY = bytes.fromhex(
    "04d368f1b665bade3c33a20f1e429c7750d5033660c019119d29aa4ba7abc04aa7c80a46bbe11ca8cb5674d74f31f8a903f6"
    "bad105fb6ab74aefef4db8b0025e1d")


async def imported(wa: Relying, username: str = "alice", *, counter: int = 0,
                   app_id: str = APP_ID) -> tuple[SoftAuthenticator, SoftCredential, Device]:
    key = SoftAuthenticator(u2f_only=True)
    handle, point, cred = key.u2f_register(app_id)
    cred.sign_count = counter
    device = await wa.mfa.webauthn.import_u2f(username, name="YubiKey 4", key_handle=handle, public_key=point,
                                              app_id=app_id, counter=counter, actor="admin")
    return key, cred, device


async def test_import_shows_a_u2f_device_of_level_2(wa: Relying) -> None:
    await wa.user("alice")
    _, cred, device = await imported(wa, counter=41)
    assert device.method is Method.U2F and device.security_level == 2 and device.is_active
    assert device.name == "YubiKey 4"
    assert device.webauthn is not None and device.webauthn.app_id == APP_ID
    assert unb64u(device.webauthn.credential_id) == cred.credential_id
    [stored] = await wa.mfa.store.load_credentials(device.user_id)
    assert stored.sign_count == 41 and stored.app_id == APP_ID
    audit = await wa.audit("u2f_imported")
    assert audit[0].event.actor == "admin" and f"app_id={APP_ID}" in (audit[0].event.detail or "")


async def test_import_validates_its_input(wa: Relying) -> None:
    await wa.user("alice")
    good = {"name": "", "key_handle": b"\x01" * 64, "public_key": C7_PUBLIC_KEY, "app_id": APP_ID, "counter": 0}
    bad = [
        {"key_handle": b""}, {"key_handle": b"\x01" * 256},
        {"public_key": C7_PUBLIC_KEY[:64]}, {"public_key": b"\x02" + C7_PUBLIC_KEY[1:]},
        {"public_key": b"\x04" + b"\x01" * 64},  # not on the curve
        {"app_id": "http://login.example.com/appid"}, {"app_id": "example.com"}, {"app_id": ""},
        {"app_id": "https://"}, {"counter": -1}, {"counter": 2**32}, {"name": "x" * 65},
    ]
    for change in bad:
        with pytest.raises(InvalidInput):
            await wa.mfa.webauthn.import_u2f("alice", **(good | change))
    device = await wa.mfa.webauthn.import_u2f("alice", **good)
    assert device.name == "U2F key"
    with pytest.raises(AlreadyExists):
        await wa.mfa.webauthn.import_u2f("alice", **good)
    await wa.mfa.policy.update(actor="admin", allowed_methods=frozenset({Method.TOTP, Method.PASSKEY}))
    with pytest.raises(PermissionDenied):
        await wa.mfa.webauthn.import_u2f("alice", **(good | {"key_handle": b"\x02" * 64}))


async def test_sign_in_under_the_appid(wa: Relying) -> None:
    await wa.user("alice")
    key, cred, device = await imported(wa, counter=41)
    cid = await wa.challenge("alice")
    o = await wa.options(cid, Method.U2F)
    assert o["extensions"] == {"appid": APP_ID}
    assert o["userVerification"] == "discouraged"
    assert [unb64u(c["id"]) for c in o["allowCredentials"]] == [cred.credential_id]
    assertion = key.get(o, ORIGIN)
    assert assertion["clientExtensionResults"] == {"appid": True}
    result = await wa.complete(cid, assertion, Method.U2F)
    assert result.accepted and result.method is Method.U2F
    accepted = await wa.audit("verify")
    assert accepted[0].event.detail == f"device={device.id} app_id={APP_ID}"
    [stored] = await wa.mfa.store.load_credentials(device.user_id)
    assert stored.sign_count == 42
    # The counter guard holds for U2F keys too.
    again = await wa.sign_in("alice", key, method=Method.U2F, counter=42)
    assert not again.accepted and again.reason is Reason.POSSIBLE_CLONE
    assert wa.metric("mfad_webauthn_clone_warnings_total", method="u2f") == 1


async def test_u2f_assertions_under_another_appid_or_without_presence_are_refused(wa: Relying) -> None:
    await wa.user("alice")
    key, _, _ = await imported(wa)
    wrong = await wa.sign_in("alice", key, method=Method.U2F, rp_id="https://other.example.com/appid")
    assert not wrong.accepted and wrong.reason is Reason.WRONG_RP_ID
    absent = await wa.sign_in("alice", key, method=Method.U2F, up=False)
    assert not absent.accepted and absent.reason is Reason.USER_NOT_PRESENT
    # A U2F key cannot answer a passkey challenge (UV required, and it is not a passkey).
    cid = await wa.challenge("alice")
    with pytest.raises(PreconditionFailed):  # no passkey bound: the method is not offered
        await wa.options(cid, Method.PASSKEY)


async def test_upgrade_to_a_passkey_retires_the_u2f_key_in_one_transaction(wa: Relying) -> None:
    await wa.user("alice")
    old_key, old_cred, u2f = await imported(wa)
    other_passkey = SoftAuthenticator()
    await wa.register("alice", other_passkey, name="phone")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="", upgrade=u2f.id, actor="user")
    o = json.loads(reg.options_json)
    excluded = {unb64u(c["id"]) for c in o["excludeCredentials"]}
    assert excluded == {other_passkey.credentials[0].credential_id}  # not the key being upgraded
    ctap2 = SoftAuthenticator()  # the same physical key, now speaking CTAP2 with a PIN
    done = await wa.mfa.webauthn.complete_registration(
        "alice", reg.registration_id, json.dumps(ctap2.create(o, ORIGIN)), actor="user", upgrade=True)
    assert done.retired == u2f.id
    assert done.device.method is Method.PASSKEY and done.device.name == "YubiKey 4"
    devices = (await wa.mfa.devices.list("alice")).devices
    assert sorted(d.method for d in devices) == [Method.PASSKEY, Method.PASSKEY]
    upgraded = await wa.audit("u2f_upgraded")
    assert upgraded[0].event.detail == f"retired={u2f.id} passkey={done.device.id}"
    assert wa.metric("mfad_webauthn_registrations_total", kind="upgrade", result="ok") == 1
    # The old U2F credential is refused from now on: no U2F method offered, unknown if forced.
    begin_methods = (await begin(wa.mfa.signin, "alice", PASSWORD, ATTEMPT)).methods
    assert Method.U2F not in begin_methods
    cid = await wa.challenge("alice")
    forged = old_key.get({"challenge": (await wa.options(cid))["challenge"], "rpId": "example.com",
                          "extensions": {"appid": APP_ID}, "allowCredentials": []}, ORIGIN, credential=old_cred)
    refused = await wa.complete(cid, forged, Method.PASSKEY)
    assert not refused.accepted and refused.reason is Reason.UNKNOWN_CREDENTIAL
    assert (await wa.sign_in("alice", ctap2)).accepted


async def test_a_ctap1_key_cannot_be_upgraded_and_keeps_working(wa: Relying) -> None:
    await wa.user("alice")
    key, _, u2f = await imported(wa)
    reg = await wa.mfa.webauthn.begin_registration("alice", name="", upgrade=u2f.id)
    # A U2F-only key registers without user verification, fido-u2f attestation.
    created = key.create(reg.options_json, ORIGIN, attestation="fido-u2f")
    before = await wa.counts()
    with pytest.raises(RegistrationRefused) as refused:
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, json.dumps(created),
                                                    upgrade=True)
    message = str(refused.value)
    assert "only U2F (CTAP1)" in message and "cannot become a passkey" in message
    assert "keeps working as a U2F key" in message
    after = await wa.counts()
    assert after["devices"] == before["devices"] and after["webauthn_credentials"] == before["webauthn_credentials"]
    audit = await wa.audit("u2f_upgrade")
    assert audit[0].event.outcome == "refused" and audit[0].event.reason == "webauthn_user_not_verified"
    assert (await wa.sign_in("alice", key, method=Method.U2F, credential=key.credentials[0])).accepted


async def test_an_upgrade_of_a_key_unbound_meanwhile_changes_nothing(wa: Relying) -> None:
    await wa.user("alice")
    _, _, u2f = await imported(wa)
    reg = await wa.mfa.webauthn.begin_registration("alice", name="", upgrade=u2f.id)
    await wa.mfa.devices.unbind("alice", u2f.id, actor="admin", as_admin=True)
    created = SoftAuthenticator().create(reg.options_json, ORIGIN)
    with pytest.raises(RegistrationRefused) as refused:
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, json.dumps(created),
                                                    upgrade=True)
    assert refused.value.reason == "u2f_key_gone"
    assert (await wa.mfa.devices.list("alice")).devices == []


async def test_an_upgrade_ceremony_cannot_complete_a_plain_binding(wa: Relying) -> None:
    await wa.user("alice")
    _, _, u2f = await imported(wa)
    reg = await wa.mfa.webauthn.begin_registration("alice", name="", upgrade=u2f.id)
    created = json.dumps(SoftAuthenticator().create(reg.options_json, ORIGIN))
    with pytest.raises(RegistrationRefused):
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, created, upgrade=False)
    assert [d.method for d in (await wa.mfa.devices.list("alice")).devices] == [Method.U2F]
