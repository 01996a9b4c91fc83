"""RADIUS accounting (RFC 2866) on the real daemon service and store, both engines:
radclient sends the reports a VPN server sends (start, interim, stop); each is answered
with an Accounting-Response and recorded once as a ``nas_session`` audit row; a wrong
secret, an unknown client and a retransmission are told apart; reports are pruned after
their own retention; the default accounting address follows the RADIUS listen address."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from pyrad.packet import AccountingRequest, AcctPacket  # type: ignore[import-untyped]
from radius_peers import RADCLIENT, SECRET, UdpNas, pyrad_request, radclient
from signin_peers import StartDaemon, accounting_address, nas, start_daemon  # noqa: F401  (fixture)

from mfad.core.accounting import SESSION_EVENT
from mfad.core.clock import FixedClock
from mfad.core.model import AuditEvent
from mfad.core.ports import AuditFilter
from mfad.core.retention import Retention
from mfad.core.service import Mfa
from mfad.core.settings import LimitSettings
from mfad.radius.accounting import accounting_listen
from mfad.radius.attributes import DICTIONARY
from mfad.radius.metrics import CountingMetrics, DropReason
from peer_tools import missing

needs_radclient = pytest.mark.skipif(RADCLIENT is None, reason=missing("radclient"))


async def reports(mfa: Mfa) -> list[AuditEvent]:
    rows = await mfa.store.query_audit(AuditFilter(event=SESSION_EVENT))
    return [row.event for row in sorted(rows, key=lambda r: r.id)]


@needs_radclient
async def test_radclient_reports_are_answered_and_recorded(start_daemon: StartDaemon, mfa: Mfa) -> None:
    server = await start_daemon(clients=[nas("vpn", trust_calling_station_id=True)])
    host, port = accounting_address(server)
    common = ['User-Name = "alice"', 'Acct-Session-Id = "4D2A0001"', 'Calling-Station-Id = "198.51.100.7"',
              'NAS-Identifier = "openvpn"']
    start = await radclient(host, port, ["Acct-Status-Type = Start", *common], command="acct")
    interim = await radclient(host, port, ["Acct-Status-Type = Interim-Update", "Acct-Session-Time = 60",
                                           *common], command="acct")
    stop = await radclient(host, port, ["Acct-Status-Type = Stop", "Acct-Session-Time = 125",
                                        "Acct-Input-Octets = 5000", "Acct-Input-Gigawords = 1",
                                        "Acct-Output-Octets = 777", "Acct-Terminate-Cause = 1", *common],
                           command="acct")
    assert [start.reply, interim.reply, stop.reply] == ["Accounting-Response"] * 3, stop.output

    rows = await reports(mfa)
    assert [row.outcome for row in rows] == ["start", "interim", "stop"]
    assert {row.username for row in rows} == {"alice"}
    assert {row.source for row in rows} == {"nas:vpn"}
    assert rows[0].detail == "session=4D2A0001 station=198.51.100.7"
    assert rows[2].detail == f"session=4D2A0001 station=198.51.100.7 seconds=125 in={(1 << 32) + 5000} out=777 cause=1"
    metrics = server.metrics
    assert isinstance(metrics, CountingMetrics)
    assert metrics.received["Accounting-Request"] == 3 and metrics.sent["Accounting-Response"] == 3


@needs_radclient
async def test_wrong_secret_and_unknown_client_get_no_answer(start_daemon: StartDaemon, mfa: Mfa) -> None:
    server = await start_daemon(clients=[nas("vpn")])
    host, port = accounting_address(server)
    wrong = await radclient(host, port, ['User-Name = "alice"', "Acct-Status-Type = Start"],
                            secret=b"not-the-secret-of-this-nas", command="acct")
    assert wrong.reply is None
    # Another loopback address is another NAS, and no configured one.
    nas_at = await UdpNas.connect(host, port, local_host="127.0.0.2")
    try:
        nas_at.send(accounting_packet(identifier=3))
        await nas_at.silence()
    finally:
        await nas_at.aclose()
    assert await reports(mfa) == []
    metrics = server.metrics
    assert isinstance(metrics, CountingMetrics)
    assert metrics.dropped[DropReason.BAD_AUTHENTICATOR] == 1
    assert metrics.dropped[DropReason.UNKNOWN_CLIENT] == 1


def accounting_packet(*, identifier: int, status: str = "Start", secret: bytes = SECRET) -> bytes:
    """An Accounting-Request built by pyrad (its Request Authenticator keyed by ``secret``)."""
    packet = AcctPacket(code=AccountingRequest, id=identifier, secret=secret, dict=DICTIONARY)
    packet["User-Name"] = "bob"
    packet["Acct-Status-Type"] = status
    packet["Acct-Session-Id"] = "S1"
    data: bytes = packet.RequestPacket()
    return data


async def test_a_retransmission_is_answered_again_and_recorded_once(start_daemon: StartDaemon, mfa: Mfa) -> None:
    server = await start_daemon(clients=[nas("vpn")])
    host, port = accounting_address(server)
    nas_at = await UdpNas.connect(host, port)
    try:
        packet = accounting_packet(identifier=9)
        nas_at.send(packet)
        first = await nas_at.receive()
        nas_at.send(packet)
        again = await nas_at.receive()
    finally:
        await nas_at.aclose()
    assert first == again and first[0] == 5  # Accounting-Response
    # The Response Authenticator (RFC 2866 §3), checked with hashlib rather than mfad's codec.
    assert first[4:20] == hashlib.md5(first[:4] + packet[4:20] + first[20:] + SECRET).digest()
    assert 80 not in attribute_numbers(first)  # no Message-Authenticator in an Accounting-Response
    assert [row.outcome for row in await reports(mfa)] == ["start"]


def attribute_numbers(raw: bytes) -> list[int]:
    numbers, position = [], 20
    while position < len(raw):
        numbers.append(raw[position])
        position += raw[position + 1]
    return numbers


async def test_status_server_on_the_accounting_port(start_daemon: StartDaemon) -> None:
    server = await start_daemon(clients=[nas("vpn")])
    host, port = accounting_address(server)
    nas_at = await UdpNas.connect(host, port)
    try:
        request = pyrad_request(code=12, identifier=4)  # Status-Server, with Message-Authenticator
        nas_at.send(request.RequestPacket())
        reply = await nas_at.receive()
        unsigned = pyrad_request(code=12, identifier=5, message_authenticator=False)
        nas_at.send(unsigned.RequestPacket())
        await nas_at.silence()
    finally:
        await nas_at.aclose()
    assert reply[0] == 5 and reply[1] == 4
    assert reply[4:20] == hashlib.md5(reply[:4] + request.authenticator + reply[20:] + SECRET).digest()


async def test_unrecorded_status_types_are_answered_and_counted_as_other(start_daemon: StartDaemon, mfa: Mfa) -> None:
    server = await start_daemon(clients=[nas("vpn")])
    host, port = accounting_address(server)
    nas_at = await UdpNas.connect(host, port)
    try:
        packet = AcctPacket(code=AccountingRequest, id=1, secret=SECRET, dict=DICTIONARY)
        packet["User-Name"] = "bob"
        packet[40] = [(15).to_bytes(4, "big")]  # Acct-Status-Type = Failed (RFC 2866 §5.1)
        nas_at.send(packet.RequestPacket())
        assert (await nas_at.receive())[0] == 5
    finally:
        await nas_at.aclose()
    assert await reports(mfa) == []


async def test_accounting_can_be_turned_off(start_daemon: StartDaemon) -> None:
    server = await start_daemon(clients=[nas("vpn")], accounting_listen=[])
    with pytest.raises(AssertionError, match="accounting is off"):
        accounting_address(server)


async def test_session_reports_are_pruned_before_the_rest_of_the_audit(mfa: Mfa, clock: FixedClock) -> None:
    start = clock.now()
    await mfa.store.append_audit(start, [AuditEvent(event=SESSION_EVENT, outcome="start", username="alice"),
                                         AuditEvent(event="user_created", outcome="ok", username="alice")])
    retention = Retention(store=mfa.store, clock=clock, limits=LimitSettings(), audit_retention_days=365,
                          session_retention_days=90)
    clock.advance(timedelta(days=89).total_seconds())
    assert (await retention.prune())["session_reports"] == 0
    clock.advance(timedelta(days=2).total_seconds())
    assert (await retention.prune())["session_reports"] == 1
    assert await reports(mfa) == []
    left = await mfa.store.query_audit(AuditFilter(event="user_created"))
    assert [row.event.username for row in left] == ["alice"]


def test_default_accounting_address_follows_the_radius_listen_address() -> None:
    assert accounting_listen(None, [("0.0.0.0", 1812), ("::", 1812)]) == ["0.0.0.0:1813", "[::]:1813"]
    assert accounting_listen(None, [("127.0.0.1", 11812)]) == ["127.0.0.1:11813"]
    assert accounting_listen(None, [("127.0.0.1", 0)]) == ["127.0.0.1:0"]
    assert accounting_listen(["192.0.2.1:1646"], [("127.0.0.1", 1812)]) == ["192.0.2.1:1646"]
    assert accounting_listen([], [("127.0.0.1", 1812)]) == []


async def test_reports_of_many_sessions_at_once_are_each_recorded(start_daemon: StartDaemon, mfa: Mfa) -> None:
    server = await start_daemon(clients=[nas("vpn")])
    host, port = accounting_address(server)
    nas_at = await UdpNas.connect(host, port)
    try:
        for identifier in range(20):
            packet = AcctPacket(code=AccountingRequest, id=identifier, secret=SECRET, dict=DICTIONARY)
            packet["User-Name"] = f"user{identifier}"
            packet["Acct-Status-Type"] = "Start"
            nas_at.send(packet.RequestPacket())
        answered = {(await nas_at.receive())[1] for _ in range(20)}
    finally:
        await nas_at.aclose()
    assert answered == set(range(20))
    assert sorted(row.username or "" for row in await reports(mfa)) == sorted(f"user{i}" for i in range(20))
