"""What the RADIUS sign-in keeps in the store, on both engines: remembered
Calling-Station-Ids, duplicates answered with the same bytes and decided once (also
across two instances on one store, also while the first is still deciding), and no
reply at all while the store cannot be written."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from radius_peers import SECRET, check_reply, pyrad_request, radclient
from signin_peers import StartDaemon, address, nas, start_daemon  # noqa: F401  (fixture)
from tcp_proxy import TcpProxy

from mfad.config import StorageSettings
from mfad.core.model import Method
from mfad.core.service import Mfa
from mfad.core.verification import Outcome, Reason, SignInResult
from mfad.radius import ClientMode, CountingMetrics, DropReason, RadiusClient, RadiusServer
from mfad.radius.signin import NEEDS_APP, OTP_ONLY_DENIED, PASSKEY_ONLY, SignInHandler
from mfad.store import open_store

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for radius tests"
MA = "Message-Authenticator = 0x00"


def pap(user: str, password: str, *extra: str) -> list[str]:
    return [f'User-Name = "{user}"', f'User-Password = "{password}"', MA, *extra]


# --- remembered Calling-Station-Id --------------------------------------------------------------
async def test_a_remembered_station_skips_the_code_for_a_trusting_client(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa, clock: Any) -> None:
    alice = await enrol("alice", password=PASSWORD)
    await mfa.policy.update(actor="test", remember_device=True, remember_days=7)
    trusting = await start_daemon(clients=[nas(trust_calling_station_id=True)])
    host, port = address(trusting)
    station = 'Calling-Station-Id = "02-00-00-00-00-01"'
    first = await radclient(host, port, pap("alice", PASSWORD, station))
    assert first.reply == "Access-Challenge"
    done = await radclient(host, port, pap("alice", alice.code(1), station, f"State = {first.first('State')}"))
    assert done.reply == "Access-Accept"
    (remembered,) = await mfa.admin.list_remembered("alice")
    assert "02-00-00-00-00-01" in remembered.label

    again = await radclient(host, port, pap("alice", PASSWORD, station))
    assert again.reply == "Access-Accept", again.output  # no second factor
    other = await radclient(host, port, pap("alice", PASSWORD, 'Calling-Station-Id = "02-00-00-00-00-02"'))
    assert other.reply == "Access-Challenge"
    wrong_password = await radclient(host, port, pap("alice", "not the password", station))
    assert wrong_password.reply == "Access-Reject"  # the first factor is still checked

    # A client that does not trust the NAS's Calling-Station-Id neither uses nor makes them.
    doubting = await start_daemon(clients=[nas()])
    assert (await radclient(*address(doubting), pap("alice", PASSWORD, station))).reply == "Access-Challenge"

    # Remembered stations go with the user's other remembered devices, and expire.
    clock.advance(8 * 86400)
    assert (await radclient(host, port, pap("alice", PASSWORD, station))).reply == "Access-Challenge"


async def test_remembered_stations_are_revoked_with_the_password(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa) -> None:
    alice = await enrol("alice", password=PASSWORD)
    await mfa.policy.update(actor="test", remember_device=True)
    host, port = address(await start_daemon(mode="otp_only", clients=[nas(trust_calling_station_id=True)]))
    station = 'Calling-Station-Id = "198.51.100.7"'
    assert (await radclient(host, port, pap("alice", alice.code(1), station))).reply == "Access-Accept"
    # otp_only: the NAS vouched for the password; the remembered station skips the code.
    assert (await radclient(host, port, pap("alice", "000000", station))).reply == "Access-Accept"
    await mfa.users.set_password("alice", PASSWORD + "!", actor="test")
    refused = await radclient(host, port, pap("alice", "000000", station))
    assert (refused.reply, refused.first("Reply-Message")) == ("Access-Reject", OTP_ONLY_DENIED)


async def test_stations_are_not_remembered_unless_the_policy_allows(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa) -> None:
    alice = await enrol("alice", password=PASSWORD)
    host, port = address(await start_daemon(mode="otp_only", clients=[nas(trust_calling_station_id=True)]))
    station = 'Calling-Station-Id = "198.51.100.7"'
    assert (await radclient(host, port, pap("alice", alice.code(1), station))).reply == "Access-Accept"
    assert await mfa.admin.list_remembered("alice") == []
    assert (await radclient(host, port, pap("alice", "000000", station))).reply == "Access-Reject"


# --- what cannot be typed -------------------------------------------------------------------------
def test_users_without_a_typeable_method_are_told_what_to_do() -> None:
    handler = SignInHandler(None, challenge_ttl=120)  # type: ignore[arg-type]
    client = RadiusClient(name="vpn", network=ipaddress.ip_network("192.0.2.0/24"), secret=SECRET)
    passkey_only = SignInResult(outcome=Outcome.SECOND_FACTOR_REQUIRED, reason=Reason.SECOND_FACTOR,
                                challenge_id="c" * 22, methods=frozenset({Method.PASSKEY}))
    assert handler._translate(passkey_only, client).message == PASSKEY_ONLY
    odd = SignInResult(outcome=Outcome.SECOND_FACTOR_REQUIRED, reason=Reason.SECOND_FACTOR,
                       challenge_id=None, methods=frozenset({Method.EMAIL}))
    assert handler._translate(odd, client).message == NEEDS_APP
    otp_only = RadiusClient(name="fw", network=ipaddress.ip_network("192.0.2.0/24"), secret=SECRET,
                            mode=ClientMode.OTP_ONLY)
    assert handler._translate(passkey_only, otp_only).message == OTP_ONLY_DENIED
    for message in (PASSKEY_ONLY, NEEDS_APP, OTP_ONLY_DENIED):
        assert len(message.encode()) <= 253  # one Reply-Message: pam_radius_auth shows only the first


async def test_append_takes_the_code_length_from_the_device(start_daemon: StartDaemon, enrol: Enrol,
                                                            mfa_factory: Callable[..., Awaitable[Mfa]],
                                                            store: Any, config: Any) -> None:
    import dataclasses

    from mfad.config import TotpSettings

    eight = await mfa_factory(store=store, config=dataclasses.replace(config, totp=TotpSettings(digits=8)))
    # A password ending in digits: only the device's length splits it right.
    bob = await enrol("bob", password="blue-walrus-000042", on=eight)
    assert len(bob.code(1)) == 8
    host, port = address(await start_daemon(mode="append"))
    ok = await radclient(host, port, pap("bob", "blue-walrus-000042" + bob.code(1)))
    assert ok.reply == "Access-Accept", ok.output


# --- duplicates ------------------------------------------------------------------------------------
class RawNas:
    """One UDP socket that can send the very same datagram to several servers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    async def replies(self, wait: float) -> list[tuple[int, bytes]]:
        loop = asyncio.get_running_loop()
        out = []
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    data, addr = await loop.sock_recvfrom(self.sock, 4096)
            except TimeoutError:
                break
            out.append((addr[1], data))
        return out

    def close(self) -> None:
        self.sock.close()


async def verifications(mfa: Mfa) -> list[str]:
    from mfad.core.ports import AuditFilter

    return [r.event.outcome for r in await mfa.audit(AuditFilter(event="verify"))]


async def test_a_retransmission_gets_the_same_bytes_and_is_decided_once(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await start_daemon(mode="otp_only")
    nas_socket = RawNas()
    try:
        request = pyrad_request(user="alice", password=alice.code(1), secret=SECRET)
        raw = request.RequestPacket()
        nas_socket.send(raw, address(server)[1])
        (_, first), = await nas_socket.replies(0.5)
        assert check_reply(request, first).code == 2
        for _ in range(3):
            nas_socket.send(raw, address(server)[1])
        again = await nas_socket.replies(0.5)
        assert [data for _, data in again] == [first] * 3
    finally:
        nas_socket.close()
    assert await verifications(mfa) == ["accepted"]
    assert server.metrics.dropped[DropReason.DUPLICATE] == 3  # type: ignore[attr-defined]


@pytest.fixture
async def second_core(store_opener: Callable[..., Awaitable[Any]],
                      mfa_factory: Callable[..., Awaitable[Mfa]]) -> Mfa:
    """Another instance's core: its own store connections on the same database."""
    return await mfa_factory(store=await store_opener())


async def test_another_instance_answers_a_retransmission_with_the_same_bytes(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa, second_core: Mfa) -> None:
    alice = await enrol("alice", password=PASSWORD)
    first = await start_daemon(mode="otp_only", shared_replies=True)
    second = await start_daemon(mode="otp_only", shared_replies=True, on=second_core)
    nas_socket = RawNas()
    try:
        request = pyrad_request(user="alice", password=alice.code(1), secret=SECRET)
        raw = request.RequestPacket()
        nas_socket.send(raw, address(first)[1])
        (_, reply), = await nas_socket.replies(0.5)
        assert check_reply(request, reply).code == 2
        # The NAS missed it and fails over: the other instance must not call it a replay. (The
        # first shares its reply just after sending it: if the second finds only the claim, it
        # looks again after shared_wait, 1 s.)
        nas_socket.send(raw, address(second)[1])
        assert [data for _, data in await nas_socket.replies(1.5)] == [reply]
    finally:
        nas_socket.close()
    assert await verifications(mfa) == ["accepted"]
    assert sum(second.metrics.decided.values()) == 0  # type: ignore[attr-defined]


async def test_instances_racing_for_one_request_decide_it_once(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa, second_core: Mfa) -> None:
    alice = await enrol("alice", password=PASSWORD)
    servers = [await start_daemon(mode="otp_only", shared_replies=True),
               await start_daemon(mode="otp_only", shared_replies=True, on=second_core)]
    nas_socket = RawNas()
    try:
        request = pyrad_request(user="alice", password=alice.code(1), secret=SECRET)
        raw = request.RequestPacket()
        for server in servers:  # the same datagram to both at once
            nas_socket.send(raw, address(server)[1])
        replies = await nas_socket.replies(1.5)
    finally:
        nas_socket.close()
    assert replies, "no instance answered"
    assert {data for _, data in replies} == {replies[0][1]}
    assert check_reply(request, replies[0][1]).code == 2
    assert await verifications(mfa) == ["accepted"]  # one decision, never a replay refusal
    decided = [sum(s.metrics.decided.values()) for s in servers]  # type: ignore[attr-defined]
    assert sorted(decided) == [0, 1]


# --- the store unavailable ----------------------------------------------------------------------
@pytest.fixture
async def unavailable_store(store_location: Any, store: Any) -> AsyncIterator[tuple[Any, Callable[[], None]]]:
    """A store on the test's database that the test can make unavailable: SQLite's write
    lock held by another connection; PostgreSQL's connections cut by a relay."""
    if store_location.engine == "sqlite":
        opened = await open_store(StorageSettings(url=store_location.url, timeout_seconds=0.3))
        blocker = sqlite3.connect(store_location.path, isolation_level=None)

        def fail() -> None:
            blocker.execute("BEGIN IMMEDIATE")

        yield opened, fail
        blocker.close()
        await opened.aclose()
        return
    proxy = TcpProxy.to(store_location.url)
    await proxy.start()
    opened = await open_store(StorageSettings(url=proxy.dsn(store_location.url), timeout_seconds=0.5),
                              schema=store_location.schema)
    yield opened, proxy.cut
    await proxy.close()
    await opened.aclose()


async def test_no_reply_while_the_store_is_unavailable(
        start_daemon: StartDaemon, enrol: Enrol, mfa_factory: Callable[..., Awaitable[Mfa]],
        unavailable_store: tuple[Any, Callable[[], None]]) -> None:
    alice = await enrol("alice", password=PASSWORD)
    opened, fail = unavailable_store
    core = await mfa_factory(store=opened)
    server: RadiusServer = await start_daemon(mode="otp_only", on=core)
    fail()
    nas_socket = RawNas()
    try:
        request = pyrad_request(user="alice", password=alice.code(1), secret=SECRET)
        nas_socket.send(request.RequestPacket(), address(server)[1])
        assert await nas_socket.replies(1.5) == []  # silence: the NAS fails over
    finally:
        nas_socket.close()
    metrics = server.metrics
    assert isinstance(metrics, CountingMetrics)
    assert metrics.dropped[DropReason.NO_REPLY] == 1
    assert not metrics.sent
