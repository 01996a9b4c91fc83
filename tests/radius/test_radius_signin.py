"""Sign-in over RADIUS end to end: radclient (freeradius-utils) against the RADIUS
service on the real core and store, in the three client modes, on both engines.

The ``enrol`` fixture confirms the device with the current step's code, so the first
code a test can use is the next step's (``code(1)``, inside the ±1 window)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from radius_peers import SECRET, UdpNas, check_reply, pyrad_request, radclient
from signin_peers import StartDaemon, address, nas, start_daemon  # noqa: F401  (fixture)

from mfad.core.model import MfaRequired
from mfad.core.service import Mfa
from mfad.radius.signin import (
    DENIED,
    ENROL_FIRST,
    ENTER_CODE,
    OTP_ONLY_DENIED,
    decode_state,
)
from peer_tools import missing

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for radius tests"
MA = "Message-Authenticator = 0x00"

pytestmark = pytest.mark.skipif(radclient is None, reason=missing("radclient"))


def pap(user: str, password: str, *extra: str) -> list[str]:
    return [f'User-Name = "{user}"', f'User-Password = "{password}"', *extra]


async def test_otp_only_accepts_a_valid_code_once(start_daemon: StartDaemon, enrol: Enrol, db: Any) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(mode="otp_only"))
    code = alice.code(1)
    first = await radclient(host, port, pap("alice", code, "Message-Authenticator = 0x00"))
    assert first.reply == "Access-Accept", first.output
    again = await radclient(host, port, pap("alice", code, "Message-Authenticator = 0x00"))
    assert again.reply == "Access-Reject"
    assert again.first("Reply-Message") == OTP_ONLY_DENIED
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify' AND outcome = 'accepted'") == 1


async def test_otp_only_unknown_user_and_bad_code_read_the_same(start_daemon: StartDaemon, enrol: Enrol) -> None:
    await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(mode="otp_only"))
    replies = [await radclient(host, port, pap(user, code, "Message-Authenticator = 0x00"))
               for user, code in (("alice", "000000"), ("nobody", "000000"), ("alice", "12ab56"))]
    assert [r.reply for r in replies] == ["Access-Reject"] * 3
    assert {r.first("Reply-Message") for r in replies} == {OTP_ONLY_DENIED}


async def test_message_authenticator_required_unless_the_client_opts_out(
        start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    strict = await start_daemon(mode="otp_only")
    without = await radclient(*address(strict), pap("alice", alice.code(1)))
    assert without.reply is None, without.output  # dropped: no reply at all
    old_gear = await start_daemon(mode="otp_only", clients=[nas(require_message_authenticator=False)])
    accepted = await radclient(*address(old_gear), pap("alice", alice.code(1)))
    assert accepted.reply == "Access-Accept", accepted.output


async def test_append_splits_password_and_code(start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(mode="append"))
    ma = "Message-Authenticator = 0x00"
    wrong = await radclient(host, port, pap("alice", PASSWORD + "000000", ma))
    assert wrong.reply == "Access-Reject" and wrong.first("Reply-Message") == DENIED
    bad_password = await radclient(host, port, pap("alice", "not-it" + alice.code(1), ma))
    assert bad_password.reply == "Access-Reject"
    ok = await radclient(host, port, pap("alice", PASSWORD + alice.code(1), ma))
    assert ok.reply == "Access-Accept", ok.output


async def test_challenge_round_trip_with_state(start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(challenge_ttl_seconds=120))  # the one [limits] knob
    ma = "Message-Authenticator = 0x00"
    first = await radclient(host, port, pap("alice", PASSWORD, ma))
    assert first.reply == "Access-Challenge", first.output
    assert first.first("Reply-Message") == ENTER_CODE
    assert first.first("Session-Timeout") == "120"
    state = first.first("State")
    assert state is not None and decode_state(bytes.fromhex(state[2:])) is not None
    wrong = await radclient(host, port, pap("alice", "000000", ma, f"State = {state}"))
    assert wrong.reply == "Access-Challenge"  # tries remain: asked again, same State
    assert wrong.first("State") == state
    assert wrong.first("Reply-Message", ).startswith("Wrong code")  # type: ignore[union-attr]
    done = await radclient(host, port, pap("alice", alice.code(1), ma, f"State = {state}"))
    assert done.reply == "Access-Accept", done.output
    reused = await radclient(host, port, pap("alice", alice.code(-1), ma, f"State = {state}"))
    assert reused.reply == "Access-Reject"  # single use


async def test_a_state_answers_only_for_the_user_it_was_made_for(start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    await enrol("mallory", password=PASSWORD)
    host, port = address(await start_daemon(challenge_tries=1))
    state = (await radclient(host, port, pap("alice", PASSWORD, MA))).first("State")
    for user in ("mallory", "nobody", "Alice"):
        other = await radclient(host, port, pap(user, alice.code(1), MA, f"State = {state}"))
        assert (other.reply, other.first("Reply-Message")) == ("Access-Reject", DENIED)
    # None of that spent alice's only try.
    done = await radclient(host, port, pap("alice", alice.code(1), MA, f"State = {state}"))
    assert done.reply == "Access-Accept", done.output


async def test_challenge_refuses_wrong_passwords_and_unknown_users_alike(
        start_daemon: StartDaemon, enrol: Enrol) -> None:
    await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon())
    ma = "Message-Authenticator = 0x00"
    replies = [await radclient(host, port, pap(user, password, ma))
               for user, password in (("alice", "wrong password"), ("nobody", PASSWORD))]
    assert [(r.reply, r.first("Reply-Message")) for r in replies] == [("Access-Reject", DENIED)] * 2


async def test_tries_run_out(start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(challenge_tries=2))
    ma = "Message-Authenticator = 0x00"
    state = (await radclient(host, port, pap("alice", PASSWORD, ma))).first("State")
    codes = iter(alice.wrong_codes())
    assert (await radclient(host, port, pap("alice", next(codes), ma, f"State = {state}"))).reply == "Access-Challenge"
    assert (await radclient(host, port, pap("alice", next(codes), ma, f"State = {state}"))).reply == "Access-Reject"
    late = await radclient(host, port, pap("alice", alice.code(1), ma, f"State = {state}"))
    assert late.reply == "Access-Reject"


async def test_typing_email_is_refused_clearly_and_keeps_the_state(start_daemon: StartDaemon, enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon())
    ma = "Message-Authenticator = 0x00"
    state = (await radclient(host, port, pap("alice", PASSWORD, ma))).first("State")
    email = await radclient(host, port, pap("alice", "email", ma, f"State = {state}"))
    assert email.reply == "Access-Challenge", email.output
    assert "not available" in (email.first("Reply-Message") or "")
    done = await radclient(host, port, pap("alice", alice.code(1), ma, f"State = {email.first('State')}"))
    assert done.reply == "Access-Accept"


async def test_enrolment_required_says_what_to_do(start_daemon: StartDaemon, mfa: Mfa) -> None:
    await mfa.users.create("carol", PASSWORD)
    host, port = address(await start_daemon())
    reply = await radclient(host, port, pap("carol", PASSWORD, "Message-Authenticator = 0x00"))
    assert (reply.reply, reply.first("Reply-Message")) == ("Access-Reject", ENROL_FIRST)
    wrong = await radclient(host, port, pap("carol", "not the password", "Message-Authenticator = 0x00"))
    assert (wrong.reply, wrong.first("Reply-Message")) == ("Access-Reject", DENIED)


@pytest.mark.parametrize("mode", ["challenge", "append"])
async def test_mfa_off_accepts_after_the_password(start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa,
                                                  mode: str) -> None:
    await enrol("alice", password=PASSWORD)
    await mfa.policy.update(actor="test", mfa_required=MfaRequired.OFF)
    host, port = address(await start_daemon(mode=mode))
    reply = await radclient(host, port, pap("alice", PASSWORD, "Message-Authenticator = 0x00"))
    assert reply.reply == "Access-Accept", reply.output


async def test_status_server(start_daemon: StartDaemon) -> None:
    host, port = address(await start_daemon())
    reply = await radclient(host, port, ["Message-Authenticator = 0x00"], command="status")
    assert reply.reply == "Access-Accept", reply.output


async def test_replies_are_signed_with_message_authenticator_first(start_daemon: StartDaemon,
                                                                   enrol: Enrol) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await start_daemon(mode="otp_only")
    nas_socket = await UdpNas.connect(*address(server))
    try:
        request = pyrad_request(user="alice", password=alice.code(1), secret=SECRET,
                                proxy_states=(b"p1", b"p2"))
        nas_socket.send(request.RequestPacket())
        reply = check_reply(request, await nas_socket.receive())
        assert reply.code == 2
        assert reply.values("Proxy-State") == [b"p1", b"p2"]
    finally:
        nas_socket.close()
