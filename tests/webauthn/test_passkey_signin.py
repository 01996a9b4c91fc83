"""Passkey sign-in at core level, on both store engines: request options, a successful
assertion and what it stores, each check refusing (with its audit reason), usernameless
sign-in with a discoverable credential, and unbinding."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from prometheus_client import generate_latest
from relying import ATTEMPT, ORIGIN, PASSWORD, Relying
from softauthn import SoftAuthenticator, b64u, dumps, unb64u

from peer_tools import need_tool
from mfad.core.errors import NotFound
from mfad.core.model import DeviceId, Method
from mfad.core.verification import Outcome, Reason
from signin_calls import begin as begin_sign_in


async def test_options_allow_the_users_passkeys_with_uv_required(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    await wa.register("alice", auth, name="second")
    cid = await wa.challenge("alice")
    o = await wa.options(cid)
    assert o["rpId"] == "example.com" and o["userVerification"] == "required"
    assert {unb64u(c["id"]) for c in o["allowCredentials"]} == {c.credential_id for c in auth.credentials}
    assert all(c["transports"] == ["internal"] for c in o["allowCredentials"])
    assert len(unb64u(o["challenge"])) == 32 and o["timeout"] == 300_000


async def test_sign_in_accepts_and_records_counter_flags_and_last_use(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator(backup_eligible=True)
    device = await wa.register("alice", auth)
    assert device.last_used_at is None
    auth.backup_state = True  # synced since registration
    result = await wa.sign_in("alice", auth)
    assert result.accepted and result.user is not None and result.user.username == "alice"
    assert result.method is Method.PASSKEY
    after = await wa.mfa.store.load_device(device.id)
    assert after is not None and after.last_used_at == wa.clock.now()
    assert after.webauthn is not None and after.webauthn.backup_state is True
    [cred] = await wa.mfa.store.load_credentials(after.user_id)
    assert cred.sign_count == 1
    accepted = await wa.audit("verify")
    assert accepted[0].event.outcome == "accepted" and accepted[0].event.method == "passkey"
    assert accepted[0].event.detail == f"device={device.id}"
    assert wa.metric("mfad_verifications_total", protocol="grpc", method="passkey", result="accepted") == 1
    # A second sign-in moves the counter on.
    wa.clock.advance(5)
    assert (await wa.sign_in("alice", auth)).accepted


async def test_a_synced_passkey_without_counter_signs_in_repeatedly(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator(counting=False, backup_eligible=True, backup_state=True)
    await wa.register("alice", auth)
    for _ in range(3):
        assert (await wa.sign_in("alice", auth)).accepted


@pytest.mark.parametrize(("bend", "reason"), [
    ({"origin": "https://evil.example.net"}, Reason.WRONG_ORIGIN),
    ({"origin": "http://login.example.com"}, Reason.WRONG_ORIGIN),
    ({"rp_id": "evil.example.net"}, Reason.WRONG_RP_ID),
    ({"uv": False}, Reason.USER_NOT_VERIFIED),
    ({"up": False}, Reason.USER_NOT_PRESENT),
    ({"challenge": b"\x02" * 32}, Reason.WRONG_CHALLENGE),
    ({"type_": "webauthn.create"}, Reason.BAD_CLIENT_DATA),
    ({"corrupt_signature": True}, Reason.BAD_SIGNATURE),
])
async def test_each_assertion_check_refuses(wa: Relying, bend: dict, reason: Reason) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    cid = await wa.challenge("alice")
    bend = dict(bend)
    origin = bend.pop("origin", ORIGIN)
    result = await wa.complete(cid, auth.get(await wa.options(cid), origin, **bend))
    assert not result.accepted and result.reason is reason and result.user is None
    refused = await wa.audit("verify")
    assert refused[0].event.outcome == "refused" and refused[0].event.reason == reason.value
    assert (await wa.mfa.lockout("alice")).failures == 1
    assert wa.metric("mfad_verifications_total", protocol="grpc", method="passkey", result=reason.value) == 1
    [cred] = await wa.mfa.store.load_credentials((await wa.mfa.users.get("alice")).id)
    assert cred.sign_count == 0  # nothing moved
    # The challenge survives a refusal (tries left); a fresh start lets the user try again.
    assert (await wa.complete(cid, auth.get(await wa.options(cid), ORIGIN))).accepted


async def test_a_replayed_assertion_is_refused(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    cid = await wa.challenge("alice")
    assertion = dumps(auth.get(await wa.options(cid), ORIGIN))
    assert (await wa.complete(cid, assertion)).accepted
    replay = await wa.complete(cid, assertion)
    assert not replay.accepted and replay.reason is Reason.NO_CHALLENGE
    # Replayed against a new sign-in: its ceremony has another challenge.
    cid2 = await wa.challenge("alice")
    await wa.options(cid2)
    again = await wa.complete(cid2, assertion)
    assert not again.accepted and again.reason is Reason.WRONG_CHALLENGE


async def test_the_ceremony_is_single_use_even_after_a_refusal(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    cid = await wa.challenge("alice")
    options = await wa.options(cid)
    assert not (await wa.complete(cid, auth.get(options, ORIGIN, uv=False))).accepted
    # The same options again (without a new start): the ceremony is gone.
    retry = await wa.complete(cid, auth.get(options, ORIGIN))
    assert not retry.accepted and retry.reason is Reason.NO_CEREMONY


async def test_an_expired_ceremony_is_refused(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    result = await begin_sign_in(wa.mfa.signin, "alice", PASSWORD, ATTEMPT, challenge_ttl=900)
    assert result.challenge_id is not None
    options = await wa.options(result.challenge_id)
    wa.clock.advance(301)  # the sign-in challenge lives on (900 s); the WebAuthn ceremony does not
    late = await wa.complete(result.challenge_id, auth.get(options, ORIGIN))
    assert not late.accepted and late.reason is Reason.EXPIRED


async def test_sign_count_regression_is_refused_audited_and_counted(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    device = await wa.register("alice", auth)
    for _ in range(3):
        assert (await wa.sign_in("alice", auth)).accepted
    for counter in (3, 2, 0):  # equal, lower, and zero after non-zero: all regressions
        result = await wa.sign_in("alice", auth, counter=counter)
        assert not result.accepted and result.reason is Reason.POSSIBLE_CLONE
    warnings = await wa.audit("webauthn_clone_warning")
    assert len(warnings) == 3
    assert warnings[-1].event.detail is not None
    assert f"device={device.id} stored_count=3 received_count=3" in warnings[-1].event.detail
    assert "possible cloned authenticator" in warnings[-1].event.detail
    assert wa.metric("mfad_webauthn_clone_warnings_total", method="passkey") == 3
    [cred] = await wa.mfa.store.load_credentials(device.user_id)
    assert cred.sign_count == 3
    assert (await wa.sign_in("alice", auth, counter=10)).accepted  # forward again


async def test_credentials_of_another_user_or_unknown_ones_are_refused(wa: Relying) -> None:
    await wa.user("alice")
    await wa.user("bob")
    alice_key, bob_key = SoftAuthenticator(), SoftAuthenticator()
    await wa.register("alice", alice_key)
    await wa.register("bob", bob_key)
    cid = await wa.challenge("alice")
    options = await wa.options(cid)
    result = await wa.complete(cid, bob_key.get(options, ORIGIN, credential=bob_key.credentials[0]))
    assert not result.accepted and result.reason is Reason.UNKNOWN_CREDENTIAL
    cid = await wa.challenge("alice")
    assertion = alice_key.get(await wa.options(cid), ORIGIN)
    assertion["id"] = assertion["rawId"] = b64u(b"\x07" * 32)
    result = await wa.complete(cid, assertion)
    assert not result.accepted and result.reason is Reason.UNKNOWN_CREDENTIAL
    # Alice's credential with bob's user handle.
    cid = await wa.challenge("alice")
    assertion = alice_key.get(await wa.options(cid), ORIGIN, user_handle=bob_key.credentials[0].user_handle)
    assert not (await wa.complete(cid, assertion)).accepted


async def test_racing_assertions_with_one_counter_value_accept_once(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    pairs = []
    for _ in range(4):
        cid = await wa.challenge("alice")
        pairs.append((cid, auth.get(await wa.options(cid), ORIGIN, counter=7)))
    results = await asyncio.gather(*(wa.complete(cid, a) for cid, a in pairs))
    assert sum(r.accepted for r in results) == 1
    assert {r.reason for r in results if not r.accepted} <= {Reason.POSSIBLE_CLONE, Reason.REPLAY}


async def test_unbinding_a_passkey_removes_its_credential(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    keep = await wa.register("alice", auth, name="keep")
    gone = await wa.register("alice", auth, name="gone")
    await wa.mfa.devices.unbind("alice", gone.id, actor="admin", as_admin=True)
    creds = await wa.mfa.store.load_credentials(keep.user_id)
    assert [c.device_id for c in creds] == [keep.id]
    result = await wa.sign_in("alice", auth, credential=auth.credentials[1])
    assert not result.accepted and result.reason is Reason.UNKNOWN_CREDENTIAL
    assert await wa.rows("webauthn_credentials") == 1


async def test_a_user_with_only_a_passkey_gets_passkey_as_the_method(wa: Relying) -> None:
    await wa.user("alice")
    begin = await begin_sign_in(wa.mfa.signin, "alice", PASSWORD, ATTEMPT)
    assert begin.outcome is Outcome.ENROLMENT_REQUIRED and Method.PASSKEY in begin.methods
    await wa.register("alice", SoftAuthenticator())
    begin = await begin_sign_in(wa.mfa.signin, "alice", PASSWORD, ATTEMPT)
    # A passkey also approves sign-ins out of band (the policy allows approval by default).
    assert begin.methods == frozenset({Method.PASSKEY, Method.APPROVAL})


async def test_remember_this_device_after_a_passkey(wa: Relying) -> None:
    await wa.mfa.policy.update(actor="admin", remember_device=True)
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    cid = await wa.challenge("alice")
    result = await wa.complete(cid, auth.get(await wa.options(cid), ORIGIN), remember=True)
    assert result.accepted and result.remembered_token
    again = await begin_sign_in(wa.mfa.signin, "alice", PASSWORD, ATTEMPT, remembered_token=result.remembered_token)
    assert again.outcome is Outcome.ALLOWED


# --- usernameless -------------------------------------------------------------------------------
async def test_usernameless_sign_in_with_a_discoverable_credential(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    begin = await begin_sign_in(wa.mfa.signin, "", None, ATTEMPT)
    assert begin.outcome is Outcome.SECOND_FACTOR_REQUIRED and begin.user is None
    assert begin.methods == frozenset({Method.PASSKEY}) and begin.challenge_id
    o = await wa.options(begin.challenge_id)
    assert "allowCredentials" not in o and o["userVerification"] == "required"
    result = await wa.complete(begin.challenge_id, auth.get(o, ORIGIN))
    assert result.accepted and result.user is not None and result.user.username == "alice"
    replay = await wa.complete(begin.challenge_id, auth.get(o, ORIGIN))
    assert not replay.accepted


async def test_usernameless_refusals_reveal_nothing(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    stranger = SoftAuthenticator()
    stranger.create({"rp": {"id": "example.com"}, "user": {"id": b64u(b"x" * 32)}, "challenge": b64u(b"c" * 32),
                     "authenticatorSelection": {"residentKey": "required"}}, ORIGIN)
    begin = await begin_sign_in(wa.mfa.signin, "", None, ATTEMPT)
    assert begin.challenge_id is not None
    o = await wa.options(begin.challenge_id)
    unknown = await wa.complete(begin.challenge_id, stranger.get(o, ORIGIN))
    no_uv = await wa.complete(begin.challenge_id, auth.get(o, ORIGIN, uv=False))
    for r in (unknown, no_uv):
        assert not r.accepted and r.user is None
    assert unknown.reason is Reason.UNKNOWN_CREDENTIAL and no_uv.reason is Reason.USER_NOT_VERIFIED
    with pytest.raises(NotFound):
        await wa.mfa.signin.start_challenge("no-such-challenge", Method.PASSKEY, ATTEMPT)
    wa.clock.advance(301)
    with pytest.raises(NotFound):
        await wa.options(begin.challenge_id)


async def test_usernameless_needs_passkeys_allowed(wa: Relying) -> None:
    await wa.mfa.policy.update(actor="admin", allowed_methods=frozenset({Method.TOTP}))
    begin = await begin_sign_in(wa.mfa.signin, "", None, ATTEMPT)
    assert begin.outcome is Outcome.REFUSED and begin.challenge_id is None


async def test_a_disabled_users_passkey_is_refused(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    begin = await begin_sign_in(wa.mfa.signin, "", None, ATTEMPT)
    assert begin.challenge_id is not None
    o = await wa.options(begin.challenge_id)
    await wa.mfa.users.set_disabled("alice", True)
    result = await wa.complete(begin.challenge_id, auth.get(o, ORIGIN))
    assert not result.accepted and result.reason is Reason.DISABLED


async def test_unbound_device_id_is_not_a_u2f_key(wa: Relying) -> None:
    await wa.user("alice")
    device = await wa.register("alice", SoftAuthenticator())
    with pytest.raises(NotFound):
        await wa.mfa.webauthn.begin_registration("alice", name="x", upgrade=device.id)
    with pytest.raises(NotFound):
        await wa.mfa.webauthn.begin_registration("alice", name="x", upgrade=DeviceId(999999))


async def test_webauthn_metrics_pass_promtool(wa: Relying) -> None:
    await wa.user("alice")
    auth = SoftAuthenticator()
    await wa.register("alice", auth)
    assert (await wa.sign_in("alice", auth)).accepted
    assert not (await wa.sign_in("alice", auth, counter=1)).accepted  # a clone warning
    body = generate_latest(wa.registry).decode()
    assert 'mfad_webauthn_clone_warnings_total{method="passkey"} 1.0' in body
    assert 'mfad_webauthn_registrations_total{kind="passkey",result="ok"} 1.0' in body
    promtool = need_tool("promtool", "prometheus")
    check = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=body,
                                    capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
