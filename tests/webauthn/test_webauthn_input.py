"""Hostile and broken input, on both store engines: every malformed registration or assertion
is INVALID_ARGUMENT (InvalidInput naming the field) before anything is consumed or stored —
never a crash, never a huge allocation; the ceremony then still completes with a good
response. Plus the published W3C vector (none.ES256) through the same code paths."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from relying import ATTEMPT, ORIGIN, Relying
from softauthn import SoftAuthenticator, b64u, cbor, unb64u

from mfad.core.credentials import Ceremony, CeremonyPurpose, NewCredential
from mfad.core.errors import InvalidInput
from mfad.core.model import Method, WebauthnInfo
from mfad.core.verification import Reason, challenge_hash
from mfad.core.webauthn.input import parse_assertion
from mfad.core.webauthn.registration import RegistrationRefused
from signin_calls import begin as begin_sign_in

Bend = Callable[[dict[str, Any]], Any]


def _set(path: str, value: Any) -> Bend:
    def bend(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return bend


def _client_data(change: dict[str, Any] | None = None, raw: bytes | None = None) -> Bend:
    def bend(d: dict[str, Any]) -> None:
        cd = json.loads(unb64u(d["response"]["clientDataJSON"]))
        cd.update(change or {})
        d["response"]["clientDataJSON"] = b64u(raw if raw is not None else json.dumps(cd).encode())
    return bend


def _att(make: Callable[[bytes], bytes]) -> Bend:
    def bend(d: dict[str, Any]) -> None:
        d["response"]["attestationObject"] = b64u(make(unb64u(d["response"]["attestationObject"])))
    return bend


DEEP_CBOR = b"\x81" * 5000 + b"\x00"
REGISTRATION_BENDS: dict[str, Bend] = {
    "rawId missing": lambda d: d.pop("rawId"),
    "rawId an integer": _set("rawId", 10**12),
    "rawId not base64url": _set("rawId", "!!!!"),
    "rawId bad length": _set("rawId", "A"),
    "id differs": _set("id", b64u(b"other")),
    "type wrong": _set("type", "password"),
    "response a list": _set("response", []),
    "clientDataJSON missing": lambda d: d["response"].pop("clientDataJSON"),
    "clientDataJSON an integer": _set("response.clientDataJSON", 10**12),
    "clientDataJSON not JSON": _client_data(raw=b"\xff\xfe not json"),
    "clientDataJSON a list": _client_data(raw=b"[1, 2]"),
    "clientDataJSON oversized": _client_data({"padding": "x" * 5000}),
    "challenge an integer": _client_data({"challenge": 10**12}),
    "origin a list": _client_data({"origin": ["https://login.example.com"]}),
    "crossOrigin a string": _client_data({"crossOrigin": "no"}),
    "attestationObject truncated": _att(lambda a: a[: len(a) // 2]),
    "attestationObject invalid CBOR": _att(lambda a: b"\xff\xff\xff"),
    "attestationObject not a map": _att(lambda a: cbor([1, 2, 3])),
    "authData an integer": _att(lambda a: cbor({"fmt": "none", "attStmt": {}, "authData": 2**40})),
    "authData truncated": _att(lambda a: cbor({"fmt": "none", "attStmt": {}, "authData": b"\x00" * 40})),
    "authData without credential": _att(lambda a: cbor({"fmt": "none", "attStmt": {}, "authData": b"\x00" * 37})),
    "deeply nested CBOR": _att(lambda a: DEEP_CBOR),
    "transports not a list": _set("response.transports", "usb"),
    "extension results a list": _set("clientExtensionResults", []),
}


@pytest.mark.parametrize("bend", REGISTRATION_BENDS.values(), ids=REGISTRATION_BENDS.keys())
async def test_malformed_registrations_are_invalid_input_and_change_nothing(wa: Relying, bend: Bend) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    good = auth.create(reg.options_json, ORIGIN)
    bad = copy.deepcopy(good)
    bend(bad)
    before = await wa.counts()
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as invalid:
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, json.dumps(bad))
    assert time.perf_counter() - started < 1.0
    assert invalid.value.field.startswith("credential_json")
    assert await wa.counts() == before  # the ceremony was not spent, nothing stored
    done = await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, json.dumps(good))
    assert done.device.method is Method.PASSKEY


@pytest.mark.parametrize("text", ["", "not json", "[]", "null", "{" * 10000 + "}" * 10000, "x" * 20000,
                                  json.dumps({"rawId": "AAAA", "response": {}, "pad": "y" * 17000})])
async def test_not_a_credential_at_all(wa: Relying, text: str) -> None:
    await wa.user("alice")
    reg = await wa.mfa.webauthn.begin_registration("alice", name="laptop")
    with pytest.raises(InvalidInput):
        await wa.mfa.webauthn.complete_registration("alice", reg.registration_id, text)
    with pytest.raises(InvalidInput):
        await wa.mfa.signin.complete("x" * 20, Method.PASSKEY, text, ATTEMPT)


ASSERTION_BENDS: dict[str, Bend] = {
    "signature an integer": _set("response.signature", 10**12),
    "signature too long": _set("response.signature", b64u(b"\x30" * 2000)),
    "authenticatorData truncated": _set("response.authenticatorData", b64u(b"\x00" * 36)),
    "authenticatorData an integer": _set("response.authenticatorData", 2**40),
    "authenticatorData trailing bytes": lambda d: d["response"].update(
        authenticatorData=d["response"]["authenticatorData"] + "AAAA"),
    "userHandle an integer": _set("response.userHandle", 7),
    "clientDataJSON oversized": _client_data({"padding": "x" * 5000}),
    "challenge an integer": _client_data({"challenge": 10**12}),
    "type missing": _client_data(raw=json.dumps({"challenge": "AAAA", "origin": ORIGIN}).encode()),
    "rawId an integer": _set("rawId", 10**12),
    "response missing": lambda d: d.pop("response"),
}


@pytest.mark.parametrize("bend", ASSERTION_BENDS.values(), ids=ASSERTION_BENDS.keys())
async def test_malformed_assertions_are_invalid_input_and_spend_nothing(wa: Relying, bend: Bend) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    cid = await wa.challenge("alice")
    good = auth.get(await wa.options(cid), ORIGIN)
    bad = copy.deepcopy(good)
    bend(bad)
    before = await wa.counts()
    with pytest.raises(InvalidInput) as invalid:
        await wa.complete(cid, bad)
    assert invalid.value.field.startswith("assertion_json")
    assert await wa.counts() == before
    assert (await wa.mfa.lockout("alice")).failures == 0
    assert (await wa.complete(cid, good)).accepted


async def test_usernameless_with_malformed_input(wa: Relying) -> None:
    begin = await begin_sign_in(wa.mfa.signin, "", None, ATTEMPT)
    assert begin.challenge_id is not None
    with pytest.raises(InvalidInput):
        await wa.mfa.signin.complete(begin.challenge_id, Method.PASSKEY, '{"rawId": 5}', ATTEMPT)
    with pytest.raises(InvalidInput):
        await begin_sign_in(wa.mfa.signin, "", "a password", ATTEMPT)  # no username but a password


async def test_parsing_rejects_every_non_string_binary(wa: Relying) -> None:
    # fido2 would turn an integer into bytes(n): the parser must never hand it one.
    for field in ("clientDataJSON", "authenticatorData", "signature"):
        d = {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
             "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA", field: 2**62}}
        with pytest.raises(InvalidInput):
            parse_assertion(json.dumps(d))


# --- the published W3C vector ---------------------------------------------------------------------
VECTOR = json.loads((Path(__file__).parent / "data" / "w3c_none_es256.json").read_text())


def _vector_registration() -> str:
    r = VECTOR["registration"]
    cid = b64u(bytes.fromhex(r["credential_id"]))
    return json.dumps({"id": cid, "rawId": cid, "type": "public-key", "response": {
        "clientDataJSON": b64u(bytes.fromhex(r["clientDataJSON"])),
        "attestationObject": b64u(bytes.fromhex(r["attestationObject"]))}})


async def test_w3c_vector_registration_passes_every_check_up_to_user_verification(wa_factory) -> None:
    wa = await wa_factory(rp_id=VECTOR["rp_id"], origins=[VECTOR["origin"]])
    user = await wa.user("alice")
    now = wa.clock.now()
    await wa.store.insert_ceremony(Ceremony(
        id_hash=challenge_hash("vector-registration"), purpose=CeremonyPurpose.REGISTER, user_id=user.id,
        challenge=bytes.fromhex(VECTOR["registration"]["challenge"]), state=json.dumps({"name": "v"}),
        created_at=now, expires_at=now.replace(year=now.year + 1)), [])
    # Its flags (UP|BE|BS|AT) carry no UV: refused for exactly that, after origin, challenge,
    # RP id hash and presence were all found right on independently made data.
    with pytest.raises(RegistrationRefused) as refused:
        await wa.mfa.webauthn.complete_registration("alice", "vector-registration", _vector_registration())
    assert refused.value.reason == Reason.USER_NOT_VERIFIED.value


async def test_w3c_vector_assertion_signature_verifies(wa_factory) -> None:
    wa = await wa_factory(rp_id=VECTOR["rp_id"], origins=[VECTOR["origin"]])
    user = await wa.user("alice")
    from mfad.core.webauthn.input import parse_registration

    reg = parse_registration(_vector_registration())
    cred = reg.response.response.attestation_object.auth_data.credential_data
    assert cred is not None
    device = await wa.store.insert_webauthn_device(user.id, NewCredential(
        method=Method.PASSKEY, name="vector", credential_id=cred.credential_id,
        public_key=cbor(dict(cred.public_key)), sign_count=0, app_id=None,
        info=WebauthnInfo(credential_id=b64u(cred.credential_id))), wa.clock.now(), lambda _: [])
    [stored] = await wa.store.load_credentials(user.id)
    assert stored.device_id == device.id
    a = VECTOR["authentication"]
    cid = b64u(cred.credential_id)
    response = {"id": cid, "rawId": cid, "type": "public-key", "response": {
        "clientDataJSON": b64u(bytes.fromhex(a["clientDataJSON"])),
        "authenticatorData": b64u(bytes.fromhex(a["authenticatorData"])),
        "signature": b64u(bytes.fromhex(a["signature"]))}}
    challenge = bytes.fromhex(a["challenge"])
    check = wa.mfa.webauthn._check_assertion  # the checks, without the UV a passkey needs
    assert check(parse_assertion(json.dumps(response)), challenge, stored, uv_required=False) is None
    assert check(parse_assertion(json.dumps(response)), challenge, stored, uv_required=True) \
        is Reason.USER_NOT_VERIFIED
    sig = bytearray(bytes.fromhex(a["signature"]))
    sig[-1] ^= 1
    response["response"]["signature"] = b64u(bytes(sig))
    assert check(parse_assertion(json.dumps(response)), challenge, stored, uv_required=False) \
        is Reason.BAD_SIGNATURE
    assert check(parse_assertion(json.dumps(response)), b"\x00" * 32, stored, uv_required=False) \
        is Reason.WRONG_CHALLENGE
