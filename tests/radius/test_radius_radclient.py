"""mfad's listener driven by FreeRADIUS's radclient, a real and independent NAS."""

from __future__ import annotations

import pytest
from radius_peers import (
    CODE,
    RADCLIENT,
    DemoPolicy,
    StartServer,
    counters,
    loopback_clients,
    radclient,
)

from mfad.radius import DropReason
from peer_tools import missing

pytestmark = pytest.mark.skipif(
    RADCLIENT is None,
    reason=missing("radclient", "apt-get install freeradius-utils; scripts/test does"),
)

WITH_MA = "Message-Authenticator = 0x00"


async def test_challenge_round_trip_with_state(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    host, port = server.addresses[0]
    first = await radclient(host, port, ["User-Name = alice", "User-Password = pw", WITH_MA])
    assert first.reply == "Access-Challenge", first.output
    assert first.attributes[0][0] == "Message-Authenticator"
    assert first.first("Reply-Message") == "Enter the code from your authenticator app"
    state = first.first("State")
    assert state is not None and state.startswith("0x")

    second = await radclient(
        host, port, ["User-Name = alice", f"User-Password = {CODE}", f"State = {state}", WITH_MA]
    )
    assert second.reply == "Access-Accept", second.output
    assert second.first("Reply-Message") == "Welcome, alice"

    # The State is single use in this policy: the same answer again is refused.
    third = await radclient(
        host, port, ["User-Name = alice", f"User-Password = {CODE}", f"State = {state}", WITH_MA]
    )
    assert third.reply == "Access-Reject", third.output
    assert policy.calls == 3


async def test_accept_and_reject(start_server: StartServer) -> None:
    server = await start_server(DemoPolicy())
    host, port = server.addresses[0]
    accepted = await radclient(host, port, ["User-Name = bob", "User-Password = pw", WITH_MA])
    assert accepted.reply == "Access-Accept", accepted.output
    rejected = await radclient(host, port, ["User-Name = bob", "User-Password = wrong", WITH_MA])
    assert rejected.reply == "Access-Reject", rejected.output
    assert rejected.first("Reply-Message") == "Access denied"


async def test_without_message_authenticator_dropped_unless_allowed(
    start_server: StartServer,
) -> None:
    strict = await start_server(DemoPolicy())
    result = await radclient(*strict.addresses[0], ["User-Name = bob", "User-Password = pw"])
    assert result.reply is None, result.output
    assert counters(strict).dropped == {DropReason.MISSING_MESSAGE_AUTHENTICATOR: 1}

    lenient = await start_server(
        DemoPolicy(), clients=loopback_clients(require_message_authenticator=False)
    )
    result = await radclient(*lenient.addresses[0], ["User-Name = bob", "User-Password = pw"])
    assert result.reply == "Access-Accept", result.output
    # The reply is signed all the same.
    assert result.attributes[0][0] == "Message-Authenticator"


async def test_wrong_secret_is_silently_dropped(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    result = await radclient(
        *server.addresses[0],
        ["User-Name = bob", "User-Password = pw", WITH_MA],
        secret=b"some-other-secret-value",
    )
    assert result.reply is None, result.output
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.BAD_AUTHENTICATOR: 1}


async def test_wrong_secret_without_message_authenticator_never_accepts(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(
        policy, clients=loopback_clients(require_message_authenticator=False)
    )
    result = await radclient(
        *server.addresses[0],
        ["User-Name = bob", "User-Password = pw"],
        secret=b"some-other-secret-value",
    )
    # The password decrypts to noise: the policy sees no "pw" and refuses; radclient
    # cannot verify a reply signed with the real secret, so it reports no valid reply.
    assert result.reply != "Access-Accept", result.output
    assert all(request.password != "pw" for request in policy.seen)


async def test_status_server(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    result = await radclient(*server.addresses[0], [WITH_MA], command="status")
    assert result.reply == "Access-Accept", result.output
    assert policy.calls == 0


async def test_proxy_state_echoed_in_order(start_server: StartServer) -> None:
    server = await start_server(DemoPolicy())
    result = await radclient(
        *server.addresses[0],
        [
            "User-Name = bob",
            "User-Password = pw",
            WITH_MA,
            "Proxy-State = 0x01",
            "Proxy-State = 0x0203",
            "Proxy-State = 0xff",
        ],
    )
    assert result.reply == "Access-Accept", result.output
    assert result.all("Proxy-State") == ["0x01", "0x0203", "0xff"]


async def test_over_ipv6(start_server: StartServer) -> None:
    server = await start_server(DemoPolicy(), listen=(("::1", 0),))
    host, port = server.addresses[0]
    assert host == "::1"
    result = await radclient(host, port, ["User-Name = bob", "User-Password = pw", WITH_MA])
    assert result.reply == "Access-Accept", result.output
