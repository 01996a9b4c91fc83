"""Passkey registration at core level, on both store engines: the options a browser gets,
what is stored, and every check that refuses a credential (nothing stored then)."""

from __future__ import annotations

import json

import pytest
from relying import ORIGIN, RP_ID, Relying
from softauthn import AttestationCa, SoftAuthenticator, b64u, dumps, unb64u

from mfad.core.errors import InvalidInput, NotFound, PermissionDenied
from mfad.core.model import DeviceState, Method
from mfad.core.webauthn.registration import RegistrationRefused


async def test_options_are_level3_json_with_the_required_settings(wa: Relying) -> None:
    await wa.user("alice")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    o = json.loads(reg.options_json)
    assert o["rp"] == {"id": RP_ID, "name": "mfad"}
    assert o["authenticatorSelection"] == {"residentKey": "required", "requireResidentKey": True,
                                           "userVerification": "required"}
    assert o["attestation"] == "none"
    assert [p["alg"] for p in o["pubKeyCredParams"]] == [-7, -8, -257]
    assert all(p["type"] == "public-key" for p in o["pubKeyCredParams"])
    assert len(unb64u(o["challenge"])) == 32
    assert o["timeout"] == 300_000
    assert o["user"]["name"] == o["user"]["displayName"] == "alice"
    assert unb64u(o["user"]["id"]) != b"alice" and len(unb64u(o["user"]["id"])) == 32
    assert o["excludeCredentials"] == []
    assert o["extensions"] == {"credProps": True}
    assert (reg.expires_at - wa.clock.now()).total_seconds() == 300


async def test_register_stores_an_active_passkey_with_its_details(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator(backup_eligible=True, backup_state=True)
    device = await wa.register("alice", auth, name="laptop")
    assert device.method is Method.PASSKEY and device.state is DeviceState.ACTIVE
    assert device.name == "laptop" and device.security_level == 3
    info = device.webauthn
    assert info is not None
    assert unb64u(info.credential_id) == auth.credentials[0].credential_id
    assert info.backup_eligible and info.backup_state
    assert info.aaguid == "6d666164-736f-6674-6175-746800000001"
    assert info.transports == ("internal",) and info.discoverable is True and info.attestation == "none"
    listing = await wa.mfa.devices.list("alice")
    assert [d.id for d in listing.devices] == [device.id]
    assert listing.devices[0].webauthn == info
    assert listing.lockout_risk  # one method type only
    bound = await wa.audit("device_bound")
    assert bound[0].event.method == "passkey" and bound[0].event.outcome == "ok"
    assert wa.metric("mfad_webauthn_registrations_total", kind="passkey", result="ok") == 1
    assert await wa.rows("webauthn_ceremonies") == 0  # consumed


async def test_several_passkeys_are_excluded_from_the_next_registration(wa: Relying) -> None:
    await wa.user("alice")
    phone, laptop = SoftAuthenticator(), SoftAuthenticator()
    await wa.register("alice", phone, name="phone")
    await wa.register("alice", laptop, name="laptop")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="tablet")
    excluded = {unb64u(c["id"]) for c in json.loads(reg.options_json)["excludeCredentials"]}
    assert excluded == {phone.credentials[0].credential_id, laptop.credentials[0].credential_id}
    names = sorted(d.name for d in (await wa.mfa.devices.list("alice")).devices)
    assert names == ["laptop", "phone"]


async def test_the_same_credential_cannot_be_registered_twice(wa: Relying) -> None:
    await wa.user("alice")
    await wa.user("bob")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    reg = await wa.mfa.webauthn.begin_registration("bob", name="stolen")
    created = auth.create(reg.options_json, ORIGIN)
    # The same credential id with bob's fresh challenge.
    response = json.loads(json.dumps(created))
    response["id"] = response["rawId"] = b64u(auth.credentials[0].credential_id)
    att = unb64u(created["response"]["attestationObject"])
    att = att.replace(auth.credentials[1].credential_id, auth.credentials[0].credential_id)
    response["response"]["attestationObject"] = b64u(att)
    before = await wa.counts()
    with pytest.raises(RegistrationRefused) as refused:
        await wa.mfa.webauthn.complete_registration("bob", reg.registration_id, dumps(response))
    assert refused.value.reason == "duplicate_credential"
    after = await wa.counts()
    assert after["devices"] == before["devices"] and after["webauthn_credentials"] == before["webauthn_credentials"]


@pytest.mark.parametrize(("bend", "reason"), [
    ({"origin": "https://evil.example.net"}, "webauthn_wrong_origin"),
    ({"origin": "https://sub.login.example.com"}, "webauthn_wrong_origin"),
    ({"rp_id": "evil.example.net"}, "webauthn_wrong_rp_id"),
    ({"uv": False}, "webauthn_user_not_verified"),
    ({"up": False}, "webauthn_user_not_present"),
    ({"challenge": b"\x01" * 32}, "webauthn_wrong_challenge"),
    ({"type_": "webauthn.get"}, "webauthn_bad_client_data"),
    ({"alg": -35}, "algorithm_not_allowed"),
])
async def test_each_registration_check_refuses_and_stores_nothing(wa: Relying, bend: dict, reason: str) -> None:
    await wa.user("alice")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    bend = dict(bend)
    origin = bend.pop("origin", ORIGIN)
    created = SoftAuthenticator().create(reg.options_json, origin, **bend)
    before = await wa.counts()
    with pytest.raises(RegistrationRefused) as refused:
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, dumps(created))
    assert refused.value.reason == reason
    after = await wa.counts()
    assert after["devices"] == before["devices"] == 0
    assert after["webauthn_credentials"] == 0
    assert after["webauthn_ceremonies"] == 0  # single use: a refusal spends it too
    audit = await wa.audit("device_bind_confirmed")
    assert audit[0].event.outcome == "refused" and audit[0].event.reason == reason
    assert wa.metric("mfad_webauthn_registrations_total", kind="passkey", result=reason) == 1


async def test_a_registration_is_single_use_and_expires(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    created = dumps(auth.create(reg.options_json, ORIGIN))
    await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, created)
    with pytest.raises(RegistrationRefused) as replay:
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, created)
    assert replay.value.reason == "unknown_registration"

    late = await wa.mfa.webauthn.begin_registration("alice", name="phone")
    created = dumps(SoftAuthenticator().create(late.options_json, ORIGIN))
    wa.clock.advance(301)
    with pytest.raises(RegistrationRefused) as expired:
        await wa.mfa.webauthn.complete_registration("alice", late.registration_id, created)
    assert expired.value.reason == "expired"
    assert len((await wa.mfa.devices.list("alice")).devices) == 1


async def test_another_users_registration_id_is_refused(wa: Relying) -> None:
    await wa.user("alice")
    await wa.user("mallory")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    created = dumps(SoftAuthenticator().create(reg.options_json, ORIGIN))
    with pytest.raises(RegistrationRefused):
        await wa.mfa.webauthn.complete_registration("mallory", reg.registration_id, created)
    assert (await wa.mfa.devices.list("mallory")).devices == []


async def test_names_policy_and_unknown_users(wa: Relying) -> None:
    await wa.user("alice")
    for bad in ("", " padded ", "x" * 65, "tab\there"):
        with pytest.raises(InvalidInput):
            await wa.mfa.webauthn.begin_registration("alice", name=bad)
    with pytest.raises(NotFound):
        await wa.mfa.webauthn.begin_registration("nobody", name="laptop")
    await wa.mfa.policy.update(actor="admin", allowed_methods=frozenset({Method.TOTP}))
    with pytest.raises(PermissionDenied):
        await wa.mfa.webauthn.begin_registration("alice", name="laptop")


async def test_direct_packed_self_attestation_is_verified(wa_factory) -> None:
    wa = await wa_factory(attestation="direct")
    await wa.user("alice")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="key")
    assert json.loads(reg.options_json)["attestation"] == "direct"
    device = await wa.register("alice", SoftAuthenticator(), attestation="packed")
    assert device.webauthn is not None and device.webauthn.attestation == "packed"
    # "none" is not among the accepted formats by default.
    with pytest.raises(RegistrationRefused) as refused:
        await wa.register("alice", SoftAuthenticator(), attestation="none")
    assert refused.value.reason == "attestation_format"


async def test_direct_attestation_with_roots_needs_a_chain_to_them(wa_factory, tmp_path) -> None:
    ca = AttestationCa()
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca.root_pem())
    wa = await wa_factory(attestation="direct", attestation_roots_file=str(roots))
    await wa.user("alice")
    device = await wa.register("alice", SoftAuthenticator(ca=ca), attestation="packed")
    assert device.webauthn is not None and device.webauthn.attestation == "packed"
    device = await wa.register("alice", SoftAuthenticator(ca=ca), attestation="fido-u2f", uv=True)
    assert device.webauthn is not None and device.webauthn.attestation == "fido-u2f"
    with pytest.raises(RegistrationRefused) as self_attested:
        await wa.register("alice", SoftAuthenticator(), attestation="packed")
    assert self_attested.value.reason == "attestation_untrusted"
    with pytest.raises(RegistrationRefused) as other_vendor:
        await wa.register("alice", SoftAuthenticator(ca=AttestationCa()), attestation="packed")
    assert other_vendor.value.reason == "attestation_untrusted"


async def test_a_u2f_only_key_cannot_register_as_a_passkey(wa: Relying) -> None:
    await wa.user("alice")
    with pytest.raises(RegistrationRefused) as refused:
        await wa.register("alice", SoftAuthenticator(u2f_only=True), attestation="fido-u2f")
    assert refused.value.reason == "webauthn_user_not_verified"
    assert "U2F" in str(refused.value)
