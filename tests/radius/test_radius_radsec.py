"""RadSec (RADIUS over TLS, RFC 6614) on the real daemon service and store, both engines.

Debian's radsecproxy stands in front of mfad as a RadSec client, taking radclient's UDP
requests and forwarding them over TLS with its certificate: a sign-in (append mode) and
accounting work end to end; radsecproxy with a certificate from another CA gets
nothing. A Python TLS client checks the rest: Status-Server, a certificate of the right
CA with a name no client has, an address no client may use, TLS versions, idle
timeouts and framing errors. The test CA and certificates are made by the test."""

from __future__ import annotations

import asyncio
import dataclasses
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from radius_peers import RADCLIENT, SECRET, pyrad_request, radclient
from signin_peers import StartDaemon, nas, service_of, start_daemon  # noqa: F401  (fixture)
from tls_ca import TestCA
from loopback import free_udp_port

from mfad.config import RadiusClientSettings, RadsecGroupSettings, RadsecSettings, load_config
from mfad.core.accounting import SESSION_EVENT
from mfad.core.errors import ConfigError
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.radius import RadiusServer
from mfad.radius.radsec import CountingRadsecMetrics, RadsecServer
from peer_tools import find_tool, missing, stop_peer

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for radsec tests"
RADSECPROXY = find_tool("radsecproxy")
needs_radsecproxy = pytest.mark.skipif(RADSECPROXY is None or RADCLIENT is None,
                                       reason=missing("radsecproxy, radclient"))


@dataclass
class Pki:
    ca: TestCA
    other: TestCA
    server: tuple[Path, Path]
    berlin: tuple[Path, Path]
    """A client certificate of the clients' CA, for the name the config gives client "berlin"."""
    stranger: tuple[Path, Path]
    """The clients' CA, a name no client has."""
    forged: tuple[Path, Path]
    """Another CA, the name of client "berlin"."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = TestCA(tmp_path, "branch CA")
    other = TestCA(tmp_path, "other CA")
    (tmp_path / "other").mkdir()
    return Pki(ca=ca, other=other, server=ca.issue("localhost", server=True),
               berlin=ca.issue("nas-berlin.example.net", server=False),
               stranger=ca.issue("nas-paris.example.net", server=False),
               forged=TestCA(tmp_path / "other", "other CA").issue("nas-berlin.example.net", server=False))


def radsec_settings(pki: Pki, **options: Any) -> RadsecSettings:
    return RadsecSettings(listen=["127.0.0.1:0"], tls_cert=str(pki.server[0]), tls_key=str(pki.server[1]),
                          groups=[RadsecGroupSettings(name="branches", ca_file=str(pki.ca.cert_path))], **options)


def berlin(**options: Any) -> RadiusClientSettings:
    values: dict[str, Any] = {"address": "127.0.0.1", "mode": "append"} | options
    return RadiusClientSettings(name="berlin", radsec_group="branches", certificate_name="nas-berlin.example.net",
                                **values)


def radsec_of(server: RadiusServer) -> RadsecServer:
    radsec = service_of(server).radsec
    assert radsec is not None
    return radsec


def connections(radsec: RadsecServer) -> CountingRadsecMetrics:
    metrics = radsec.connection_metrics
    assert isinstance(metrics, CountingRadsecMetrics)
    return metrics


# --- radsecproxy in front ----------------------------------------------------------------------
SHIPPED_PROXY_CONF = Path(__file__).resolve().parents[2] / "clients" / "nas" / "radsecproxy" / "radsecproxy.conf"


def proxy_conf(**values: str) -> str:
    """The shipped radsecproxy.conf with its site-specific values replaced: every other line
    is run as shipped. Each value replaced must be there (the test follows the file)."""
    text = SHIPPED_PROXY_CONF.read_text()
    listen = f"ListenUDP 127.0.0.1:{values['udp_port']}"
    for shipped, value in (("ListenUDP 10.1.0.2:1812\nListenUDP 10.1.0.2:1813", listen),
                           ("LogLevel 3", "LogLevel 4"),
                           ("file:///var/log/radsecproxy/radsecproxy.log", f"file://{values['dir']}/radsecproxy.log"),
                           ("/etc/radsecproxy/mfad-ca.pem", values["ca"]),
                           ("/etc/radsecproxy/nas-berlin.pem", values["cert"]),
                           ("/etc/radsecproxy/nas-berlin.key", values["key"]),
                           ("host 10.1.0.0/24", "host 127.0.0.1"),
                           ("a-long-random-secret-for-the-branch-lan", values["secret"]),
                           # mfad's test certificate is for "localhost"
                           ("host mfad.example.net", "host localhost"),
                           ("port 2083", f"port {values['port']}")):
        assert shipped in text, f"{shipped!r} is no longer in {SHIPPED_PROXY_CONF}"
        text = text.replace(shipped, value)
    return text


SHIPPED_MFAD_CONF = SHIPPED_PROXY_CONF.parent / "mfad.toml"


def shipped_radsec(directory: Path, pki: Pki) -> tuple[RadsecSettings, RadiusClientSettings]:
    """mfad's side of the shipped example, read by mfad's own loader with this test's
    certificates in place of its /etc/mfad files; only the listen address changes."""
    text = SHIPPED_MFAD_CONF.read_text()
    for shipped, path in (("/etc/mfad/radsec-server.pem", pki.server[0]),
                          ("/etc/mfad/radsec-server.key", pki.server[1]),
                          ("/etc/mfad/branch-ca.pem", pki.ca.cert_path)):
        assert shipped in text, f"{shipped!r} is no longer in {SHIPPED_MFAD_CONF}"
        text = text.replace(shipped, str(path))
    (directory / "mfad.toml").write_text(text)
    config = load_config(directory / "mfad.toml", env={})
    (client,) = config.radius.clients
    return dataclasses.replace(config.radsec, listen=["127.0.0.1:0"]), client


@contextlib.contextmanager
def radsecproxy(directory: Path, port: int, ca: Path, cert: tuple[Path, Path]) -> Iterator[int]:
    """radsecproxy in the foreground, UDP in from radclient, TLS out to mfad on ``port``;
    yields its UDP port."""
    assert RADSECPROXY is not None
    udp_port = free_udp_port()
    conf = directory / "radsecproxy.conf"
    conf.write_text(proxy_conf(udp_port=str(udp_port), dir=str(directory), ca=str(ca), cert=str(cert[0]),
                               key=str(cert[1]), secret=SECRET.decode(), port=str(port)))
    process = subprocess.Popen([RADSECPROXY, "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        yield udp_port
    finally:
        stop_peer(process)


async def through_proxy(udp_port: int, lines: list[str], command: str = "auth") -> str | None:
    """radclient to radsecproxy; the first request may wait for radsecproxy's TLS connection."""
    result = None
    for _ in range(5):
        result = await radclient("127.0.0.1", udp_port, lines, command=command)
        if result.reply is not None:
            return result.reply
    return None


@needs_radsecproxy
async def test_radsecproxy_forwards_sign_in_and_accounting_over_tls(
        start_daemon: StartDaemon, enrol: Enrol, pki: Pki, mfa: Mfa, tmp_path: Path) -> None:
    alice = await enrol("alice", password=PASSWORD)
    radsec_conf, berlin_client = shipped_radsec(tmp_path, pki)  # clients/nas/radsecproxy/mfad.toml
    server = await start_daemon(clients=[nas(), berlin_client], radsec=radsec_conf)
    radsec = radsec_of(server)
    with radsecproxy(tmp_path, radsec.addresses[0][1], pki.ca.cert_path, pki.berlin) as udp_port:
        accepted = await through_proxy(udp_port, ['User-Name = "alice"',
                                                  f'User-Password = "{PASSWORD}{alice.code(1)}"'])
        assert accepted == "Access-Accept", (tmp_path / "radsecproxy.log").read_text()
        refused = await through_proxy(udp_port, ['User-Name = "alice"',
                                                 f'User-Password = "{PASSWORD}{next(iter(alice.wrong_codes()))}"'])
        assert refused == "Access-Reject"
        answered = await through_proxy(udp_port, ['User-Name = "alice"', "Acct-Status-Type = Start",
                                                  'Acct-Session-Id = "T1"'], command="acct")
        assert answered == "Accounting-Response"
    rows = await mfa.store.query_audit(AuditFilter(event=SESSION_EVENT))
    assert [(r.event.outcome, r.event.protocol, r.event.source) for r in rows] == [("start", "radsec", "nas:berlin")]
    assert await accepted_sign_ins(mfa, alice), "the sign-in went through the core like a UDP one"
    assert connections(radsec).connections["accepted"] >= 1
    assert connections(radsec).connections["handshake_failed"] == 0


@needs_radsecproxy
async def test_radsecproxy_with_a_certificate_of_another_ca_is_refused(
        start_daemon: StartDaemon, enrol: Enrol, pki: Pki, mfa: Mfa, tmp_path: Path) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    with radsecproxy(tmp_path, radsec.addresses[0][1], pki.ca.cert_path, pki.forged) as udp_port:
        result = await radclient("127.0.0.1", udp_port, ['User-Name = "alice"',
                                                        f'User-Password = "{PASSWORD}{alice.code(1)}"'])
        assert result.reply in (None, "Access-Reject")  # radsecproxy may reject when its server is down
        await connections(radsec).until(lambda m: m.connections["handshake_failed"] >= 1)
    assert connections(radsec).connections["accepted"] == 0
    assert not await accepted_sign_ins(mfa, alice)


async def accepted_sign_ins(mfa: Mfa, user: Any) -> list[Any]:
    rows = await mfa.store.query_audit(AuditFilter(user_id=user.user.id))
    return [r.event for r in rows if r.event.protocol == "radius" and r.event.outcome == "accepted"]


# --- a TLS client of the test's own ----------------------------------------------------------------
@contextlib.asynccontextmanager
async def tls_client(pki: Pki, port: int, cert: tuple[Path, Path], *,
                     max_version: ssl.TLSVersion | None = None) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                                                      asyncio.StreamWriter]]:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_version is not None:
        context.maximum_version = max_version
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        header = await reader.readexactly(4)
        return header + await reader.readexactly(int.from_bytes(header[2:4], "big") - 4)


async def closed_without_reply(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection (or the TLS session fails) with nothing sent."""
    try:
        async with asyncio.timeout(5):
            data = await reader.read(1)
    except (ssl.SSLError, ConnectionError):
        return True
    return data == b""


async def test_status_server_and_an_access_request_over_tls(start_daemon: StartDaemon, enrol: Enrol,
                                                             pki: Pki) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.berlin) as (reader, writer):
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"  # preferred when both have it
        status = pyrad_request(code=12, identifier=1, secret=b"radsec")
        writer.write(status.RequestPacket())
        assert (await read_packet(reader))[:2] == bytes([2, 1])  # Access-Accept to Status-Server
        # No Message-Authenticator: over TLS it is not needed (BlastRADIUS needs a path it cannot alter).
        request = pyrad_request(user="alice", password=PASSWORD + alice.code(1), secret=b"radsec", identifier=2,
                                message_authenticator=False)
        writer.write(request.RequestPacket())
        reply = await read_packet(reader)
        assert reply[:2] == bytes([2, 2]) and reply[20] == 80  # Access-Accept, Message-Authenticator first


async def test_a_certificate_naming_no_client_is_refused(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.stranger) as (reader, writer):
        writer.write(pyrad_request(code=12, identifier=1, secret=b"radsec").RequestPacket())
        assert await closed_without_reply(reader)
    assert connections(radsec).connections["unknown_certificate"] == 1


async def test_a_certificate_of_another_ca_is_refused(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.forged) as (reader, writer):
        writer.write(pyrad_request(code=12, identifier=1, secret=b"radsec").RequestPacket())
        assert await closed_without_reply(reader)
    await connections(radsec).until(lambda m: m.connections["handshake_failed"] == 1)


async def test_an_address_no_radsec_client_may_use_is_closed_before_tls(start_daemon: StartDaemon,
                                                                        pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin(address="192.0.2.0/24")], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    reader, writer = await asyncio.open_connection(*radsec.addresses[0])
    try:
        assert await closed_without_reply(reader)
    finally:
        writer.close()
    assert connections(radsec).connections["refused_address"] == 1


async def test_tls_below_the_minimum_version_is_refused(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki, tls_min_version="1.3"))
    radsec = radsec_of(server)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        async with tls_client(pki, radsec.addresses[0][1], pki.berlin, max_version=ssl.TLSVersion.TLSv1_2):
            pass
    await connections(radsec).until(lambda m: m.connections["handshake_failed"] == 1)


async def test_tls_1_2_is_accepted_by_default(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.berlin, max_version=ssl.TLSVersion.TLSv1_2) as (
            reader, writer):
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.write(pyrad_request(code=12, identifier=3, secret=b"radsec").RequestPacket())
        assert (await read_packet(reader))[0] == 2


async def test_an_idle_connection_is_closed(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki, idle_timeout_seconds=0.5))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.berlin) as (reader, _):
        assert await closed_without_reply(reader)
    assert connections(radsec).disconnects["idle_timeout"] == 1


async def test_a_framing_error_closes_the_connection(start_daemon: StartDaemon, pki: Pki) -> None:
    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki))
    radsec = radsec_of(server)
    async with tls_client(pki, radsec.addresses[0][1], pki.berlin) as (reader, writer):
        writer.write(bytes([1, 1, 0, 5]) + bytes(16))  # Length 5: under a RADIUS header
        assert await closed_without_reply(reader)
    await connections(radsec).until(lambda m: m.disconnects["framing_error"] == 1)


# --- configuration -------------------------------------------------------------------------------
def test_config_names_the_bad_radsec_keys(tmp_path: Path, pki: Pki) -> None:
    file = tmp_path / "mfad.toml"
    file.write_text(f"""
[radsec]
listen = ["127.0.0.1:2083"]
tls_cert = "{pki.server[0]}"

[[radsec.groups]]
name = "branches"
ca_file = "{pki.ca.cert_path}"

[[radius.clients]]
name = "berlin"
address = "0.0.0.0/0"
radsec_group = "branches"
certificate_name = "nas-berlin.example.net"
secret = "a secret that RadSec does not use"

[[radius.clients]]
name = "paris"
address = "0.0.0.0/0"
radsec_group = "paris-group"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(file, env={})
    text = str(caught.value)
    for key in ("radsec.tls_key", "radius.clients[0].secret", "radius.clients[1].radsec_group",
                "radius.clients[1].certificate_name"):
        assert key in text, text


def test_a_good_radsec_config_loads(tmp_path: Path, pki: Pki) -> None:
    file = tmp_path / "mfad.toml"
    file.write_text(f"""
[radsec]
listen = ["0.0.0.0:2083"]
tls_cert = "{pki.server[0]}"
tls_key = "{pki.server[1]}"

[[radsec.groups]]
name = "branches"
ca_file = "{pki.ca.cert_path}"

[[radius.clients]]
name = "berlin"
address = "0.0.0.0/0"
radsec_group = "branches"
certificate_name = "nas-berlin.example.net"
mode = "append"
""")
    config = load_config(file, env={})
    assert config.radsec.listen == ["0.0.0.0:2083"]
    assert config.radius.clients[0].radsec_group == "branches"


async def _client_hello_first(pki: Pki, address: tuple[str, int]) -> bytes:
    """A TLS client whose ClientHello is in the socket before the server's event loop has even
    accepted the connection (the connect and the send block the loop that runs this); then a
    Status-Server. Returns the reply's first bytes."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    context.load_cert_chain(*pki.berlin)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    raw = socket.create_connection(address, timeout=5)  # blocking: the loop does not run meanwhile
    loop = asyncio.get_running_loop()

    async def receive() -> None:
        data = await loop.sock_recv(raw, 65536)
        assert data, "the server closed the connection"
        incoming.write(data)

    try:
        raw.sendall(outgoing.read())  # the ClientHello
        raw.setblocking(False)
        async with asyncio.timeout(10):  # well under the handshake timeout: a stall fails here
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await loop.sock_sendall(raw, outgoing.read())
                    await receive()
            tls.write(pyrad_request(code=12, identifier=7, secret=b"radsec").RequestPacket())
            await loop.sock_sendall(raw, outgoing.read())  # the client's Finished and the request
            reply = b""
            while len(reply) < 2:
                try:
                    reply += tls.read(4096)
                except ssl.SSLWantReadError:
                    await receive()
        return reply[:2]
    finally:
        raw.close()


async def test_a_client_hello_sent_before_the_server_looks_is_answered(start_daemon: StartDaemon, pki: Pki) -> None:
    """A NAS that sends its ClientHello at once. A stream upgraded with ``start_tls`` after it
    began reading swallowed those bytes and stalled until the handshake timeout — on uvloop
    (what ``mfad serve`` runs on), which starts reading as soon as a connection is made. Run
    on this test's loop and on a uvloop of its own in a thread, with the same TLS settings."""
    import dataclasses
    import uvloop

    server = await start_daemon(clients=[nas(), berlin()], radsec=radsec_settings(pki, handshake_timeout_seconds=30))
    radsec = radsec_of(server)
    assert await _client_hello_first(pki, radsec.addresses[0]) == bytes([2, 7])  # Access-Accept to Status-Server
    assert connections(radsec).connections["accepted"] == 1

    async def on_uvloop() -> tuple[bytes, int]:
        own = RadsecServer(dataclasses.replace(radsec.settings, listen=(("127.0.0.1", 0),)), radsec._context,
                           radsec._identities, radsec._handler)  # Status-Server is answered by the listener
        await own.start()
        try:
            return (await _client_hello_first(pki, own.addresses[0]),
                    connections(own).connections["accepted"])
        finally:
            await own.aclose()

    assert await asyncio.to_thread(uvloop.run, on_uvloop()) == (bytes([2, 7]), 1)
