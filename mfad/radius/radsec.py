"""RadSec: RADIUS over TLS (RFC 6614) on TCP, port 2083 by convention.

A connection is taken only from an address some RadSec client may use; then TLS (1.2 at
least, 1.3 when the peer has it) with a client certificate that must chain to one of the
configured groups' CAs. The certificate names the client: it must be issued directly by
the CA (or an intermediate) in its group's ``ca_file``, and carry that client's
``certificate_name`` as subject CN or subjectAltName (DNS, IP or URI); the connection's
address must be in the client's ``address`` network. Anything else is closed before a
single RADIUS packet is read.

On the connection, RADIUS packets are framed by their own Length (RFC 6614 §2.5) and
signed with the fixed secret ``radsec``. Access-Requests go to the same sign-in handler
as the UDP ones, Accounting-Requests to the same accounting handler, Status-Server is
answered at once (RFC 5997). Requests on one connection are decided concurrently
(bounded per connection) and answered in the order they are decided.

Guarantees:

- BlastRADIUS (CVE-2024-3596) needs to alter packets in transit; TLS authenticates and
  protects every octet, so RadSec clients are not exposed to it whether or not their
  packets carry Message-Authenticator (replies carry it anyway).
- Only a handler's Decision.accept produces an Access-Accept; a fault, a timeout or
  ``NO_REPLY`` sends nothing for that request (the client fails over); a framing error
  (a Length under 20 or over 4096) closes the connection, since the stream cannot be
  resynchronised; other malformed packets are dropped and counted.
- A connection idle for ``idle_timeout`` is closed; a handshake is bounded by
  ``handshake_timeout``; at most ``max_connections`` connections are open.
- ``aclose()`` stops accepting, lets requests being decided finish for at most
  ``drain_timeout`` seconds, then closes every connection.

Nothing here logs a secret, a password or packet contents.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from mfad.radius.accounting import AccountingHandler
from mfad.radius.clients import RadiusClient
from mfad.radius.codec import (
    HEADER_LENGTH,
    MAX_PACKET_LENGTH,
    PacketFault,
    RadiusCode,
    RadiusRequest,
    code_name,
    decode_request,
    encode_reply,
)
from mfad.radius.deadlines import Deadlines
from mfad.radius.errors import RadiusBindError, RadiusConfigError, RadiusEncodeError, RadiusError
from mfad.radius.handler import Decision, NoReply, Outcome, RadiusHandler
from mfad.radius.metrics import DropReason, NullMetrics, RadiusMetrics, WatchedCounters
from mfad.radius.server import is_missing_message_authenticator

log = logging.getLogger("mfad.radius")

DEFAULT_PORT: Final = 2083
_CODES: Final = frozenset({RadiusCode.ACCESS_REQUEST, RadiusCode.ACCOUNTING_REQUEST, RadiusCode.STATUS_SERVER})
_READ_TIMEOUT: Final = 10.0
"""Seconds the rest of a packet may take once its header arrived (a stalled sender)."""
_TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class ConnectionResult:
    """Labels of ``mfad_radsec_connections_total{result}`` (a closed set)."""

    ACCEPTED: Final = "accepted"
    REFUSED_ADDRESS: Final = "refused_address"
    HANDSHAKE_FAILED: Final = "handshake_failed"
    UNKNOWN_CERTIFICATE: Final = "unknown_certificate"
    OVER_LIMIT: Final = "over_limit"
    ALL: Final = (ACCEPTED, REFUSED_ADDRESS, HANDSHAKE_FAILED, UNKNOWN_CERTIFICATE, OVER_LIMIT)


class CloseReason:
    """Labels of ``mfad_radsec_disconnects_total{reason}``."""

    IDLE: Final = "idle_timeout"
    PEER: Final = "peer_closed"
    FRAMING: Final = "framing_error"
    SHUTDOWN: Final = "shutdown"
    ALL: Final = (IDLE, PEER, FRAMING, SHUTDOWN)


class RadsecMetrics(Protocol):
    def connection(self, result: str) -> None: ...

    def disconnect(self, reason: str) -> None: ...


class CountingRadsecMetrics(WatchedCounters):
    def __init__(self) -> None:
        super().__init__()
        self.connections: dict[str, int] = dict.fromkeys(ConnectionResult.ALL, 0)
        self.disconnects: dict[str, int] = dict.fromkeys(CloseReason.ALL, 0)

    def connection(self, result: str) -> None:
        self.connections[result] += 1
        self._changed()

    def disconnect(self, reason: str) -> None:
        self.disconnects[reason] += 1
        self._changed()


class PrometheusRadsecMetrics:
    """``mfad_radsec_connections_total{result}``, ``mfad_radsec_disconnects_total{reason}``,
    ``mfad_radsec_connections_open``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        connections = PromCounter("mfad_radsec_connections", "RadSec connections, by result (accepted, "
                                  "refused_address, handshake_failed, unknown_certificate, over_limit).", ["result"],
                                  registry=registry)
        disconnects = PromCounter("mfad_radsec_disconnects", "Accepted RadSec connections closed, by reason.",
                                  ["reason"], registry=registry)
        self._open = Gauge("mfad_radsec_connections_open", "RadSec connections open now.", registry=registry)
        self._connections = {result: connections.labels(result) for result in ConnectionResult.ALL}
        self._disconnects = {reason: disconnects.labels(reason) for reason in CloseReason.ALL}

    def connection(self, result: str) -> None:
        self._connections[result].inc()
        if result == ConnectionResult.ACCEPTED:
            self._open.inc()

    def disconnect(self, reason: str) -> None:
        self._disconnects[reason].inc()
        self._open.dec()


@dataclass(frozen=True, slots=True, kw_only=True)
class RadsecClient:
    """A RadSec client: its RADIUS client entry, its group and the name its certificate carries."""

    client: RadiusClient
    group: str
    certificate_name: str


def certificate_names(certificate: x509.Certificate) -> frozenset[str]:
    """The subject CNs and subjectAltNames (DNS, IP, URI) of a certificate, lower-cased."""
    names = {str(attribute.value) for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alt = None
    if alt is not None:
        names.update(alt.get_values_for_type(x509.DNSName))
        names.update(alt.get_values_for_type(x509.UniformResourceIdentifier))
        names.update(str(ip) for ip in alt.get_values_for_type(x509.IPAddress))
    return frozenset(name.lower() for name in names)


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    if certificate.issuer != ca.subject:
        return False
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class Identities:
    """Which RadSec client a verified peer certificate and address are."""

    def __init__(self, cas: Mapping[str, Sequence[x509.Certificate]], clients: Iterable[RadsecClient]) -> None:
        self._cas = {group: tuple(certs) for group, certs in cas.items()}
        self._clients = tuple(clients)
        seen: set[tuple[str, str]] = set()
        for entry in self._clients:
            if entry.group not in self._cas:
                raise RadiusConfigError(f"RadSec client {entry.client.name}: no group {entry.group!r}")
            key = (entry.group, entry.certificate_name.lower())
            if key in seen:
                raise RadiusConfigError(f"RadSec clients of group {entry.group!r} share the certificate name "
                                        f"{entry.certificate_name!r}")
            seen.add(key)

    def __len__(self) -> int:
        return len(self._clients)

    def may_connect(self, host: str) -> bool:
        """Whether some RadSec client may connect from ``host`` (checked before TLS)."""
        address = _address(host)
        return address is not None and any(address in entry.client.network for entry in self._clients
                                           if entry.client.network.version == address.version)

    def identify(self, der: bytes, host: str) -> RadiusClient | None:
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
        address = _address(host)
        names = certificate_names(certificate)
        for entry in self._clients:
            network = entry.client.network
            if (entry.certificate_name.lower() in names and address is not None
                    and network.version == address.version and address in network
                    and any(_issued_by(certificate, ca) for ca in self._cas[entry.group])):
                return entry.client
        return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def load_cas(path: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise RadiusConfigError(f"cannot read the CA certificates in {path}: {exc}") from None
    return certificates


def server_context(*, cert_file: str, key_file: str, ca_files: Iterable[str], min_version: str = "1.2") -> ssl.SSLContext:
    """TLS for the listener: this certificate, client certificates required and verified
    against every group's CAs (an intermediate listed there is an anchor of its own)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[min_version]
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_cert_chain(cert_file, key_file)
        for ca_file in ca_files:
            context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise RadiusConfigError(f"RadSec TLS set-up failed: {exc}") from None
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class RadsecServerSettings:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", DEFAULT_PORT),)
    reuse_port: bool = False
    idle_timeout: float = 600.0
    handshake_timeout: float = 10.0
    max_connections: int = 256
    max_in_flight_per_connection: int = 256
    handler_timeout: float = 5.0
    reject_delay: float = 1.0
    drain_timeout: float = 5.0


@dataclass(eq=False)
class _Connection:
    client: RadiusClient
    host: str
    writer: asyncio.StreamWriter
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    keys: set[tuple[int, bytes]] = field(default_factory=set)

    def send(self, packet: bytes, metrics: RadiusMetrics) -> None:
        if not self.writer.is_closing():
            self.writer.write(packet)
            metrics.packet_sent(code_name(packet[0]))


class RadsecServer:
    """The RadSec listener service: ``start()``/``run()`` and ``aclose()``."""

    def __init__(self, settings: RadsecServerSettings, context: ssl.SSLContext, identities: Identities,
                 handler: RadiusHandler, accounting: AccountingHandler | None = None, *,
                 metrics: RadiusMetrics | None = None, connection_metrics: RadsecMetrics | None = None) -> None:
        self.settings: Final = settings
        self.metrics: Final[RadiusMetrics] = metrics if metrics is not None else NullMetrics()
        self.connection_metrics: Final[RadsecMetrics] = (connection_metrics if connection_metrics is not None
                                                         else CountingRadsecMetrics())
        self._context = context
        self._identities = identities
        self._handler = handler
        self._accounting = accounting
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines = Deadlines(settings.handler_timeout)
        self._connections: set[_Connection] = set()
        self._handshakes = 0
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in self._listeners]

    async def start(self) -> None:
        """Bind every listener and accept on it. Connections are accepted here, not by an
        ``asyncio.Server``: a stream's ``start_tls`` does not hand the TLS layer the bytes the
        stream already read, so a client whose ClientHello arrived before the upgrade (most
        send it at once) stalled until the handshake timeout. An accepted socket is given
        to ``connect_accepted_socket`` with TLS from its first byte, after the address check."""
        if self._listeners:
            return
        try:
            for host, port in self.settings.listen:
                try:
                    family = socket.AF_INET6 if ":" in host else socket.AF_INET
                    listener = socket.create_server((host, port), family=family, backlog=1024,
                                                    reuse_port=self.settings.reuse_port)
                except OSError as exc:
                    raise RadiusBindError(exc.errno, f"cannot bind RadSec listener {host}:{port}: "
                                          f"{exc.strerror}") from None
                listener.setblocking(False)
                self._listeners.append(listener)
        except BaseException:
            self._close_listeners()
            raise
        for listener in self._listeners:
            self._track(self._accept_loop(listener))
        log.info("RadSec listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def run(self) -> None:
        """Serve until :meth:`aclose`; :meth:`start` binds first."""
        if not self._listeners and not self._closing:
            raise RadiusError("RadsecServer.run() before start()")
        await self._closed.wait()

    async def aclose(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            self._close_listeners()
            tasks = {task for connection in self._connections for task in connection.tasks}
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
                for task in pending:
                    task.cancel()
            for connection in list(self._connections):
                connection.writer.close()
            await asyncio.sleep(0)  # the closed connections' tasks see their end
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2.0)
        finally:
            self._deadlines.close()
            self._closed.set()

    def _close_listeners(self) -> None:
        for task in list(self._tasks):
            if task.get_name() == "radsec-accept":
                task.cancel()
        for listener in self._listeners:
            listener.close()

    def _track(self, coro: Coroutine[Any, Any, None], name: str = "radsec-accept") -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, a connection reset before accept: go on
                if self._closing:
                    return
                log.warning("RadSec accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            self._track(self._accept(sock, str(peer[0])), name="radsec-connection")

    # --- one connection -----------------------------------------------------------------------

    async def _accept(self, sock: socket.socket, host: str) -> None:
        accepted = await self._handshake(sock, host)
        if accepted is None:
            return
        client, reader, writer = accepted
        connection = _Connection(client=client, host=host, writer=writer)
        self._connections.add(connection)
        self.connection_metrics.connection(ConnectionResult.ACCEPTED)
        log.debug("RadSec connection from %s: client %s", host, client.name)
        reason = CloseReason.SHUTDOWN
        try:
            reason = await self._serve(reader, connection)
        finally:
            self._connections.discard(connection)
            self.connection_metrics.disconnect(reason)
            writer.close()

    async def _handshake(self, sock: socket.socket, host: str
                         ) -> tuple[RadiusClient, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The client this connection is, after its TLS handshake; None (the socket closed) when
        refused: an address no client may use and too many connections before any TLS."""
        metrics = self.connection_metrics
        if self._closing:
            sock.close()
            return None
        if not self._identities.may_connect(host):
            metrics.connection(ConnectionResult.REFUSED_ADDRESS)
            sock.close()
            return None
        if len(self._connections) + self._handshakes >= self.settings.max_connections:
            metrics.connection(ConnectionResult.OVER_LIMIT)
            sock.close()
            return None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_PACKET_LENGTH * 2, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        self._handshakes += 1
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=self._context, ssl_handshake_timeout=self.settings.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            metrics.connection(ConnectionResult.HANDSHAKE_FAILED)
            log.info("RadSec TLS handshake with %s failed: %s", host, type(exc).__name__)
            sock.close()
            return None
        finally:
            self._handshakes -= 1
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        client = self._identities.identify(der, host) if der else None
        if client is None:
            metrics.connection(ConnectionResult.UNKNOWN_CERTIFICATE)
            log.warning("RadSec connection from %s refused: its certificate names no client of its CA's group", host)
            writer.close()
            return None
        return client, reader, writer

    async def _serve(self, reader: asyncio.StreamReader, connection: _Connection) -> str:
        while not self._closing:
            try:
                async with asyncio.timeout(self.settings.idle_timeout):
                    header = await reader.readexactly(4)
            except TimeoutError:
                return CloseReason.IDLE
            except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
                return CloseReason.PEER
            length = int.from_bytes(header[2:4], "big")
            if not HEADER_LENGTH <= length <= MAX_PACKET_LENGTH:
                self.metrics.packet_received(code_name(header[0]))
                self.metrics.packet_dropped(DropReason.MALFORMED, connection.client.name)
                return CloseReason.FRAMING
            try:
                async with asyncio.timeout(_READ_TIMEOUT):
                    rest = await reader.readexactly(length - 4)
            except (TimeoutError, asyncio.IncompleteReadError, OSError, ssl.SSLError):
                return CloseReason.PEER
            self._packet(header + rest, connection)
        return CloseReason.SHUTDOWN

    def _packet(self, data: bytes, connection: _Connection) -> None:
        metrics = self.metrics
        metrics.packet_received(code_name(data[0]))
        client = connection.client
        request = decode_request(data, client.secret, connection.host, codes=_CODES)
        if isinstance(request, PacketFault):
            metrics.packet_dropped(DropReason.BAD_AUTHENTICATOR if request is PacketFault.BAD_AUTHENTICATOR
                                   else DropReason.MALFORMED, client.name)
            return
        if is_missing_message_authenticator(request, client):
            metrics.packet_dropped(DropReason.MISSING_MESSAGE_AUTHENTICATOR, client.name)
            return
        if request.code is RadiusCode.STATUS_SERVER:
            connection.send(encode_reply(request, RadiusCode.ACCESS_ACCEPT, client.secret), metrics)
            return
        key = (request.identifier, request.authenticator)
        if key in connection.keys:
            metrics.packet_dropped(DropReason.DUPLICATE, client.name)
            return
        if len(connection.tasks) >= self.settings.max_in_flight_per_connection:
            metrics.packet_dropped(DropReason.OVERLOAD, client.name)
            return
        connection.keys.add(key)
        task = asyncio.get_running_loop().create_task(self._decide(request, connection, time.monotonic()))
        connection.tasks.add(task)
        task.add_done_callback(connection.tasks.discard)
        task.add_done_callback(lambda _: connection.keys.discard(key))

    async def _decide(self, request: RadiusRequest, connection: _Connection, received_at: float) -> None:
        client = connection.client
        watch = self._deadlines.watch()
        try:
            if request.code is RadiusCode.ACCOUNTING_REQUEST:
                packet = await self._account(request, client)
                delay = 0.0
            else:
                packet, delay = await self._sign_in(request, client)
        except asyncio.CancelledError:
            if not watch.expired_now():
                raise
            self.metrics.packet_dropped(DropReason.TIMEOUT, client.name)
            return
        except Exception:
            log.exception("RadSec request of client %s could not be decided", client.name)
            self.metrics.packet_dropped(DropReason.HANDLER_ERROR, client.name)
            return
        finally:
            watch.done()
        if packet is None:
            self.metrics.packet_dropped(DropReason.NO_REPLY, client.name)
            return
        self.metrics.request_latency(time.monotonic() - received_at)
        if delay > 0:
            await asyncio.sleep(delay)
        connection.send(packet, self.metrics)

    async def _account(self, request: RadiusRequest, client: RadiusClient) -> bytes | None:
        if self._accounting is None:
            return None
        return await self._accounting.answer(request, client)

    async def _sign_in(self, request: RadiusRequest, client: RadiusClient) -> tuple[bytes | None, float]:
        decision = await self._handler(request, client)
        if isinstance(decision, NoReply) or not isinstance(decision, Decision):
            return None, 0.0
        try:
            packet = encode_reply(request, decision.code, client.secret, decision.encoded)
        except RadiusEncodeError as exc:
            log.error("RadSec reply for client %s cannot be encoded: %s", client.name, exc)
            return None, 0.0
        self.metrics.reply_decided(client.mode, decision.outcome)
        return packet, self.settings.reject_delay if decision.outcome is Outcome.REJECT else 0.0


__all__ = ["DEFAULT_PORT", "CountingRadsecMetrics", "Identities", "PrometheusRadsecMetrics", "RadsecClient",
           "RadsecMetrics", "RadsecServer", "RadsecServerSettings", "certificate_names", "load_cas",
           "server_context"]
