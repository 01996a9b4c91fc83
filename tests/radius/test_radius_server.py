"""The listener against a raw UDP NAS of the tests' own: real sockets on loopback."""

from __future__ import annotations

import asyncio
import logging

import pytest
from radius_peers import (
    CODE,
    SECRET,
    DemoPolicy,
    StartServer,
    UdpNas,
    check_reply,
    counters,
    loopback_clients,
    pyrad_request,
)

from mfad.radius import (
    NO_REPLY,
    ClientMode,
    Decision,
    DropReason,
    NoReply,
    Outcome,
    RadiusBindError,
    RadiusClient,
    RadiusError,
    RadiusRequest,
    RequestKey,
    parse_network,
)
from mfad.radius.cache import Claim


async def nas_for(server_address: tuple[str, int]) -> UdpNas:
    return await UdpNas.connect(*server_address)


async def test_challenge_round_trip_carries_state(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    first = pyrad_request(user="alice", password="pw", identifier=1)
    nas.send(first.RequestPacket())
    challenge = check_reply(first, await nas.receive())
    assert challenge.code == 11
    assert challenge.values("Reply-Message") == ["Enter the code from your authenticator app"]
    [state] = challenge.values("State")
    assert isinstance(state, bytes) and len(state) == 16

    second = pyrad_request(user="alice", password=CODE, identifier=2, state=state)
    nas.send(second.RequestPacket())
    accept = check_reply(second, await nas.receive())
    assert accept.code == 2
    assert accept.values("Reply-Message") == ["Welcome, alice"]
    decided = counters(server).decided
    assert decided[(ClientMode.CHALLENGE, Outcome.CHALLENGE)] == 1
    assert decided[(ClientMode.CHALLENGE, Outcome.ACCEPT)] == 1
    assert counters(server).sent == {"Access-Challenge": 1, "Access-Accept": 1}
    nas.close()


async def test_missing_message_authenticator_is_dropped_when_required(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request(message_authenticator=False).RequestPacket())
    await nas.silence()
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.MISSING_MESSAGE_AUTHENTICATOR: 1}
    nas.close()


async def test_old_nas_without_message_authenticator_is_answered_when_allowed(
    start_server: StartServer,
) -> None:
    server = await start_server(
        DemoPolicy(), clients=loopback_clients(require_message_authenticator=False)
    )
    nas = await nas_for(server.addresses[0])
    request = pyrad_request(message_authenticator=False)
    nas.send(request.RequestPacket())
    assert check_reply(request, await nas.receive()).code == 2
    nas.close()


async def test_limit_proxy_state_drops_proxy_state_without_message_authenticator(
    start_server: StartServer,
) -> None:
    limited = await start_server(
        DemoPolicy(), clients=loopback_clients(require_message_authenticator=False)
    )
    nas = await nas_for(limited.addresses[0])
    nas.send(pyrad_request(message_authenticator=False, proxy_states=[b"p1"]).RequestPacket())
    await nas.silence()
    assert counters(limited).dropped == {DropReason.MISSING_MESSAGE_AUTHENTICATOR: 1}
    # The same request with a Message-Authenticator is fine.
    signed = pyrad_request(proxy_states=[b"p1"])
    nas.send(signed.RequestPacket())
    assert check_reply(signed, await nas.receive()).values("Proxy-State") == [b"p1"]
    nas.close()

    open_proxy = await start_server(
        DemoPolicy(),
        clients=loopback_clients(require_message_authenticator=False, limit_proxy_state=False),
    )
    nas = await nas_for(open_proxy.addresses[0])
    request = pyrad_request(message_authenticator=False, proxy_states=[b"p1", b"p2"])
    nas.send(request.RequestPacket())
    assert check_reply(request, await nas.receive()).values("Proxy-State") == [b"p1", b"p2"]
    nas.close()


async def test_eap_message_without_message_authenticator_is_dropped(
    start_server: StartServer,
) -> None:
    server = await start_server(
        DemoPolicy(),
        clients=loopback_clients(require_message_authenticator=False, limit_proxy_state=False),
    )
    nas = await nas_for(server.addresses[0])
    request = pyrad_request(message_authenticator=False)
    request["EAP-Message"] = b"\x02\x01\x00\x06\x01a"
    nas.send(request.RequestPacket())
    await nas.silence()
    assert counters(server).dropped == {DropReason.MISSING_MESSAGE_AUTHENTICATOR: 1}
    nas.close()


async def test_wrong_secret_is_silently_dropped(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request(secret=b"not-the-shared-secret").RequestPacket())
    await nas.silence()
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.BAD_AUTHENTICATOR: 1}
    nas.close()


async def test_unknown_client_is_dropped_and_counted(start_server: StartServer) -> None:
    policy = DemoPolicy()
    only_elsewhere = [
        RadiusClient(name="far", network=parse_network("192.0.2.0/24"), secret=SECRET)
    ]
    server = await start_server(policy, clients=only_elsewhere)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request().RequestPacket())
    nas.send(pyrad_request(code=12).RequestPacket())
    await nas.silence()
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.UNKNOWN_CLIENT: 2}
    nas.close()


async def test_status_server_is_answered_and_needs_message_authenticator(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(
        policy, clients=loopback_clients(require_message_authenticator=False)
    )
    nas = await nas_for(server.addresses[0])
    status = pyrad_request(code=12, identifier=200)
    nas.send(status.RequestPacket())
    assert check_reply(status, await nas.receive()).code == 2
    nas.send(pyrad_request(code=12, message_authenticator=False).RequestPacket())
    await nas.silence()
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.MISSING_MESSAGE_AUTHENTICATOR: 1}
    nas.close()


async def test_retransmission_gets_identical_bytes_without_processing(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    raw = pyrad_request(user="alice", password="pw").RequestPacket()
    nas.send(raw)
    first = await nas.receive()
    nas.send(raw)
    assert await nas.receive() == first
    assert policy.calls == 1
    assert counters(server).dropped == {DropReason.DUPLICATE: 1}
    assert counters(server).decided[(ClientMode.CHALLENGE, Outcome.CHALLENGE)] == 1
    nas.close()


async def test_retransmission_while_in_flight_waits_for_the_one_reply(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy(delay=0.4)
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    raw = pyrad_request(user="alice", password="pw").RequestPacket()
    nas.send(raw)
    await policy.called.wait()
    nas.send(raw)
    nas.send(raw)
    reply = await nas.receive()
    await nas.silence(0.2)
    nas.send(raw)
    assert await nas.receive() == reply
    assert policy.calls == 1
    assert counters(server).dropped == {DropReason.DUPLICATE: 3}
    nas.close()


async def test_same_identifier_with_new_authenticator_is_a_new_request(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    for _ in range(2):
        request = pyrad_request(identifier=5)
        nas.send(request.RequestPacket())
        check_reply(request, await nas.receive())
    assert policy.calls == 2
    nas.close()


async def test_malformed_packets_are_dropped_and_counted(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    good = pyrad_request().RequestPacket()
    oversize = good + b"\x00" * (4097 - len(good))
    truncated = good[:-5]
    overflowing = bytearray(good)
    overflowing[21] = 250  # the first attribute now runs past the end of the packet
    wrong_code = bytes([4]) + good[1:]
    for data in (b"\x01\x02", oversize, truncated, bytes(overflowing), wrong_code):
        nas.send(data)
    await nas.silence()
    assert policy.calls == 0
    assert counters(server).dropped == {DropReason.MALFORMED: 5}
    # The server is still serving.
    nas.send(good)
    assert (await nas.receive())[0] == 2
    nas.close()


async def test_reject_delay_holds_no_slot_and_is_not_skipped_by_retransmission(
    start_server: StartServer,
) -> None:
    policy = DemoPolicy()
    server = await start_server(policy, reject_delay=2.0)
    metrics = counters(server)
    nas = await nas_for(server.addresses[0])
    raw = pyrad_request(user="mallory", password="guess").RequestPacket()
    nas.send(raw)
    await metrics.until(lambda m: m.decided[(ClientMode.CHALLENGE, Outcome.REJECT)] == 1)
    assert server.in_flight == 0  # decided: the reject waits out its delay without a slot
    assert metrics.sent == {}
    nas.send(raw)
    await metrics.until(lambda m: m.dropped[DropReason.DUPLICATE] == 1)
    assert metrics.sent == {}  # the retransmission did not get the reject early
    reply = await nas.receive(timeout=10.0)
    assert reply[0] == 3
    assert metrics.sent == {"Access-Reject": 1}  # one reject for both copies
    nas.send(raw)
    assert await nas.receive() == reply  # after the delay, from the cache
    assert policy.calls == 1
    nas.close()


async def test_accept_is_not_delayed(start_server: StartServer) -> None:
    server = await start_server(DemoPolicy(), reject_delay=2.0)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request().RequestPacket())
    assert (await nas.receive(timeout=1.0))[0] == 2
    nas.close()


async def test_overload_beyond_in_flight_cap(start_server: StartServer) -> None:
    policy = DemoPolicy(delay=0.3)
    server = await start_server(policy, max_in_flight=1)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request(identifier=1).RequestPacket())
    await policy.called.wait()
    nas.send(pyrad_request(identifier=2).RequestPacket())
    assert (await nas.receive())[1] == 1
    await nas.silence()
    assert counters(server).dropped == {DropReason.OVERLOAD: 1}
    nas.close()


async def test_each_client_keeps_its_share_of_the_in_flight_cap(start_server: StartServer) -> None:
    clients = [RadiusClient(name=name, network=parse_network(address), secret=SECRET)
               for name, address in (("busy", "127.0.0.1"), ("quiet", "127.0.0.2"))]
    server = await start_server(DemoPolicy(delay=0.3), clients=clients, max_in_flight=4)  # a share of 2 each
    host, port = server.addresses[0]
    busy = await UdpNas.connect(host, port)
    quiet = await UdpNas.connect(host, port, local_host="127.0.0.2")
    for identifier in range(5):
        busy.send(pyrad_request(identifier=identifier).RequestPacket())
    await counters(server).until(lambda m: m.shed[("busy", DropReason.OVERLOAD)] == 3)  # busy's share is full
    for identifier in range(2):
        quiet.send(pyrad_request(identifier=identifier).RequestPacket())
    assert sorted([(await quiet.receive())[1] for _ in range(2)]) == [0, 1]
    assert sorted([(await busy.receive())[1] for _ in range(2)]) == [0, 1]
    await busy.silence()
    assert counters(server).shed == {("busy", DropReason.OVERLOAD): 3}
    busy.close()
    quiet.close()


async def test_per_client_rate_limit(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy, client_rate=0.5, client_burst=2)
    nas = await nas_for(server.addresses[0])
    for identifier in range(3):
        nas.send(pyrad_request(identifier=identifier).RequestPacket())
    replies = {(await nas.receive())[1], (await nas.receive())[1]}
    await nas.silence()
    assert replies == {0, 1}
    assert counters(server).dropped == {DropReason.RATE_LIMITED: 1}
    nas.close()


async def test_no_reply_is_silent_and_not_cached(start_server: StartServer) -> None:
    calls = 0

    async def unavailable(request: RadiusRequest, client: RadiusClient) -> Decision | NoReply:
        nonlocal calls
        calls += 1
        return NO_REPLY

    server = await start_server(unavailable)
    nas = await nas_for(server.addresses[0])
    raw = pyrad_request().RequestPacket()
    nas.send(raw)
    await nas.silence()
    nas.send(raw)
    await nas.silence()
    assert calls == 2
    assert counters(server).dropped == {DropReason.NO_REPLY: 2}
    nas.close()


async def test_handler_fault_is_silent_and_logged_without_secrets(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: RadiusRequest, client: RadiusClient) -> Decision | NoReply:
        raise RuntimeError("store exploded")

    server = await start_server(broken)
    nas = await nas_for(server.addresses[0])
    with caplog.at_level(logging.DEBUG, logger="mfad.radius"):
        nas.send(pyrad_request(password="hunter2-password").RequestPacket())
        await nas.silence()
    assert counters(server).dropped == {DropReason.HANDLER_ERROR: 1}
    assert "store exploded" in caplog.text
    assert "hunter2" not in caplog.text and SECRET.decode() not in caplog.text
    nas.close()


async def test_handler_timeout_is_silent(start_server: StartServer) -> None:
    policy = DemoPolicy(delay=5.0)
    server = await start_server(policy, handler_timeout=0.1)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request().RequestPacket())
    await nas.silence(0.4)
    assert counters(server).dropped == {DropReason.TIMEOUT: 1}
    assert server.in_flight == 0
    nas.close()


async def test_extra_attributes_reach_the_nas(start_server: StartServer) -> None:
    async def with_timeout(request: RadiusRequest, client: RadiusClient) -> Decision | NoReply:
        return Decision.accept("hi", attributes=[("Session-Timeout", 3600), ("Class", b"grp")])

    server = await start_server(with_timeout)
    nas = await nas_for(server.addresses[0])
    request = pyrad_request()
    nas.send(request.RequestPacket())
    reply = check_reply(request, await nas.receive())
    assert reply.values("Session-Timeout") == [3600]
    assert reply.values("Class") == [b"grp"]
    nas.close()


class MemorySharedCache:
    """A stand-in for the store's reply table, shared by two server instances."""

    def __init__(self) -> None:
        self.replies: dict[bytes, bytes] = {}

    async def load_reply(self, key: RequestKey) -> bytes | None:
        return self.replies.get(key.digest())

    async def save_reply(self, key: RequestKey, reply: bytes, ttl: float) -> None:
        self.replies[key.digest()] = reply


async def test_retransmission_to_another_instance_gets_the_same_reply(
    start_server: StartServer,
) -> None:
    shared = MemorySharedCache()
    first_policy, second_policy = DemoPolicy(), DemoPolicy()
    first = await start_server(first_policy, shared_cache=shared)
    second = await start_server(second_policy, shared_cache=shared)
    # The same NAS socket (address and port) retransmits to the other instance.
    to_first = await UdpNas.connect(*first.addresses[0])
    raw = pyrad_request(user="alice", password="pw").RequestPacket()
    to_first.send(raw)
    reply = await to_first.receive()
    port = to_first.port
    await to_first.aclose()
    to_second = await UdpNas.connect(*second.addresses[0], local_port=port)
    to_second.send(raw)
    assert await to_second.receive() == reply
    to_second.close()
    assert (first_policy.calls, second_policy.calls) == (1, 0)
    assert counters(second).dropped == {DropReason.DUPLICATE: 1}


async def test_a_failing_shared_cache_does_not_decide(start_server: StartServer) -> None:
    class Broken:
        async def load_reply(self, key: RequestKey) -> bytes | None:
            raise ConnectionError("store down")

        async def save_reply(self, key: RequestKey, reply: bytes, ttl: float) -> None:
            await asyncio.Event().wait()  # hangs: only shared_cache_timeout ends it

    policy = DemoPolicy()
    server = await start_server(policy, shared_cache=Broken(), shared_cache_timeout=0.1)
    nas = await nas_for(server.addresses[0])
    request = pyrad_request()
    nas.send(request.RequestPacket())
    assert check_reply(request, await nas.receive()).code == 2
    assert policy.calls == 1
    nas.close()


async def test_single_process_does_not_share_its_port(start_server: StartServer) -> None:
    first = await start_server(DemoPolicy())
    host, port = first.addresses[0]
    with pytest.raises(RadiusBindError, match=f"{host}:{port}"):
        await start_server(DemoPolicy(), listen=((host, port),))


async def test_workers_share_the_port_with_reuse_port(start_server: StartServer) -> None:
    first = await start_server(DemoPolicy(), reuse_port=True)
    host, port = first.addresses[0]
    second = await start_server(DemoPolicy(), listen=((host, port),), reuse_port=True)
    assert second.addresses == [(host, port)]


async def test_ipv4_and_ipv6_listeners(start_server: StartServer) -> None:
    policy = DemoPolicy()
    server = await start_server(policy, listen=(("127.0.0.1", 0), ("::1", 0)))
    (v4_host, v4_port), (v6_host, v6_port) = server.addresses
    assert (v4_host, v6_host) == ("127.0.0.1", "::1")
    for address in server.addresses:
        nas = await nas_for(address)
        request = pyrad_request()
        nas.send(request.RequestPacket())
        assert check_reply(request, await nas.receive()).code == 2
        nas.close()
    assert policy.calls == 2


async def test_close_lets_requests_in_flight_answer(start_server: StartServer) -> None:
    policy = DemoPolicy(delay=0.3)
    server = await start_server(policy)
    nas = await nas_for(server.addresses[0])
    request = pyrad_request()
    nas.send(request.RequestPacket())
    await policy.called.wait()
    await server.aclose()
    assert check_reply(request, await nas.receive()).code == 2
    # After close nothing is admitted any more.
    assert server.addresses == []
    nas.close()


async def test_close_bounds_the_drain_and_flushes_delayed_rejects(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    slow = DemoPolicy(delay=30.0)
    server = await start_server(slow, drain_timeout=0.2, reject_delay=5.0)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request().RequestPacket())
    await slow.called.wait()
    with caplog.at_level(logging.WARNING, logger="mfad.radius"):
        async with asyncio.timeout(15):  # the decision would take 30 s: only the drain bound ends it
            await server.aclose()
    assert "RADIUS shutdown cancelled 1 requests still being decided" in caplog.text
    await nas.silence(0.2)
    nas.close()

    deciding = DemoPolicy()
    rejecting = await start_server(deciding, reject_delay=5.0)
    nas = await nas_for(rejecting.addresses[0])
    nas.send(pyrad_request(user="mallory").RequestPacket())
    await deciding.called.wait()
    await rejecting.aclose()
    assert (await nas.receive(timeout=1.0))[0] == 3
    nas.close()


async def test_start_warns_about_clients_without_message_authenticator(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mfad.radius"):
        await start_server(
            DemoPolicy(),
            clients=loopback_clients(require_message_authenticator=False, limit_proxy_state=False),
        )
    assert "lo4" in caplog.text and "BlastRADIUS" in caplog.text
    assert SECRET.decode() not in caplog.text


async def test_a_closed_server_does_not_start_again(start_server: StartServer) -> None:
    server = await start_server(DemoPolicy())
    await server.aclose()
    await server.aclose()  # idempotent
    with pytest.raises(RadiusError):
        await server.start()


async def test_run_serves_what_start_bound_and_never_binds_itself() -> None:
    from mfad.radius import ClientTable, RadiusServer, RadiusServerSettings

    server = RadiusServer(RadiusServerSettings(listen=(("127.0.0.1", 0),)), ClientTable(loopback_clients()),
                          DemoPolicy())
    with pytest.raises(RadiusError, match="before start"):
        await server.run()
    assert server.addresses == []
    await server.start()
    bound = server.addresses
    runner = asyncio.create_task(server.run())
    await server.start()  # a second start binds nothing more
    assert server.addresses == bound
    await server.aclose()
    async with asyncio.timeout(10):
        await runner


class PeerDeciding:
    """A claiming shared cache whose every request another instance is deciding."""

    def __init__(self) -> None:
        self.claimed = asyncio.Event()
        self.loads = 0
        self.reply: bytes | None = None

    async def claim_reply(self, key: RequestKey, hold: float) -> bytes | Claim:
        self.claimed.set()
        return Claim.IN_FLIGHT

    async def load_reply(self, key: RequestKey) -> bytes | None:
        self.loads += 1
        return self.reply

    async def save_reply(self, key: RequestKey, reply: bytes, ttl: float) -> None:
        raise AssertionError("a request another instance decides is not saved here")

    async def release_reply(self, key: RequestKey) -> None:
        raise AssertionError("nothing claimed here")


async def test_a_request_another_instance_decides_gets_its_reply_after_one_look(start_server: StartServer) -> None:
    peer = PeerDeciding()
    policy = DemoPolicy()
    server = await start_server(policy, shared_cache=peer, shared_wait=0.3)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request(identifier=1).RequestPacket())
    await peer.claimed.wait()
    peer.reply = b"the other instance's reply"  # saved there while this one waits
    assert await nas.receive() == b"the other instance's reply"
    assert (peer.loads, policy.calls) == (1, 0)  # looked once, never decided here

    peer.claimed.clear()
    peer.reply = None
    nas.send(pyrad_request(identifier=2).RequestPacket())
    await peer.claimed.wait()
    await nas.silence()
    assert (peer.loads, policy.calls) == (2, 0)
    assert counters(server).dropped == {DropReason.DUPLICATE: 2}
    nas.close()


async def test_shutdown_ends_the_wait_for_another_instance(start_server: StartServer) -> None:
    peer = PeerDeciding()
    server = await start_server(DemoPolicy(), shared_cache=peer, shared_wait=10.0, drain_timeout=30.0)
    nas = await nas_for(server.addresses[0])
    nas.send(pyrad_request().RequestPacket())
    await peer.claimed.wait()
    async with asyncio.timeout(5):  # far less than shared_wait: aclose ends the wait
        await server.aclose()
    assert peer.loads == 1  # looked once more, not cancelled by the drain bound
    nas.close()
