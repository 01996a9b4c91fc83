"""RADIUS accounting (RFC 2866): session reports of the NASes in, Accounting-Responses out.

VPN servers such as OpenVPN's radiusplugin send an Accounting-Request when a session
starts, every few minutes while it lasts and when it stops, and some drop the user
when nobody answers. mfad answers them on the accounting port (``[radius]
accounting_listen``, by default the RADIUS listen hosts on port 1813), with the same
clients and secrets as the authentication port, and records each report as a
``nas_session`` audit row (:mod:`mfad.core.accounting`).

Guarantees:

- An Accounting-Response is sent only after the report is stored (RFC 2866 §2); with
  the store unavailable the request gets no answer and the NAS sends it again, to this
  server or its next one.
- A request is taken only from a configured client, with a Request Authenticator
  keyed by that client's secret (and a valid Message-Authenticator when it carries
  one); anything else is dropped and counted, never answered. Status-Server is
  answered at once (RFC 5997, Message-Authenticator required).
- A retransmission (same client, port, Identifier and authenticator) is not recorded
  twice: it gets the same Accounting-Response again from the reply cache.
- :class:`AccountingHandler` is transport-free, so RadSec (:mod:`mfad.radius.radsec`)
  answers accounting on its TLS connections with the very same code.

Nothing here logs a secret or packet contents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from mfad.core.accounting import SessionLog, SessionReport, SessionStatus
from mfad.core.errors import Unavailable
from mfad.radius.cache import ReplyCache, RequestKey
from mfad.radius.clients import ClientTable, RadiusClient
from mfad.radius.codec import (
    ACCOUNTING_CODES,
    HEADER_LENGTH,
    PacketFault,
    RadiusCode,
    RadiusRequest,
    code_name,
    decode_request,
    encode_reply,
)
from mfad.radius.deadlines import Deadlines
from mfad.radius.errors import RadiusError
from mfad.radius.limits import TokenBuckets
from mfad.radius.metrics import UNKNOWN_CLIENT_LABEL, DropReason, NullMetrics, RadiusMetrics
from mfad.radius.server import (
    Address,
    RadiusProtocol,
    RadiusServerSettings,
    UdpListeners,
    is_missing_message_authenticator,
)

log = logging.getLogger("mfad.radius")

PROTOCOL: Final = "radius"

ACCT_STATUS_TYPE: Final = 40
_ACCT_INPUT_OCTETS: Final = 42
_ACCT_OUTPUT_OCTETS: Final = 43
_ACCT_SESSION_ID: Final = 44
_ACCT_SESSION_TIME: Final = 46
_ACCT_TERMINATE_CAUSE: Final = 49
_ACCT_INPUT_GIGAWORDS: Final = 52
_ACCT_OUTPUT_GIGAWORDS: Final = 53

STATUS_TYPES: Final = {1: SessionStatus.START, 2: SessionStatus.STOP, 3: SessionStatus.INTERIM,
                       7: SessionStatus.NAS_ON, 8: SessionStatus.NAS_OFF}
"""RFC 2866 §5.1 Acct-Status-Type values mfad records; others are answered, not recorded."""

OTHER_STATUS: Final = "other"


class AccountingMetrics(Protocol):
    def report(self, status: str) -> None:
        """A report was answered: one of :class:`SessionStatus` or ``"other"``."""
        ...


class NullAccountingMetrics:
    def report(self, status: str) -> None:
        pass


class PrometheusAccountingMetrics:
    """``mfad_radius_accounting_reports_total{status}``: reports answered, by status (bounded)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        reports = PromCounter("mfad_radius_accounting_reports", "RADIUS accounting reports recorded and answered, "
                              "by Acct-Status-Type (start, interim, stop, nas_on, nas_off, other).", ["status"],
                              registry=registry)
        self._reports = {status: reports.labels(status) for status in (*SessionStatus, OTHER_STATUS)}

    def report(self, status: str) -> None:
        self._reports.get(status, self._reports[OTHER_STATUS]).inc()


def _number(request: RadiusRequest, attr: int) -> int | None:
    value = request.get(attr)
    return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None


def _octets(request: RadiusRequest, low: int, high: int) -> int | None:
    """A 64-bit counter from its 32-bit value and Gigawords (RFC 2869 §5.1)."""
    value = _number(request, low)
    if value is None:
        return None
    return ((_number(request, high) or 0) << 32) + value


def session_report(request: RadiusRequest, client: RadiusClient, protocol: str = PROTOCOL) -> SessionReport | None:
    """The report an Accounting-Request makes, or None for a status mfad does not record."""
    status_type = _number(request, ACCT_STATUS_TYPE)
    status = STATUS_TYPES.get(status_type) if status_type is not None else None
    if status is None:
        return None
    session_id = request.get(_ACCT_SESSION_ID)
    return SessionReport(
        status=status, nas=client.name, protocol=protocol, username=request.user_name,
        session_id=session_id.decode("utf-8", "replace") if session_id is not None else None,
        station=request.calling_station_id if client.trust_calling_station_id else None,
        seconds=_number(request, _ACCT_SESSION_TIME),
        octets_in=_octets(request, _ACCT_INPUT_OCTETS, _ACCT_INPUT_GIGAWORDS),
        octets_out=_octets(request, _ACCT_OUTPUT_OCTETS, _ACCT_OUTPUT_GIGAWORDS),
        cause=_number(request, _ACCT_TERMINATE_CAUSE))


class AccountingHandler:
    """Records one verified Accounting-Request and makes its Accounting-Response."""

    def __init__(self, sessions: SessionLog, *, metrics: AccountingMetrics | None = None,
                 protocol: str = PROTOCOL) -> None:
        self._sessions = sessions
        self._metrics = metrics if metrics is not None else NullAccountingMetrics()
        self._protocol = protocol

    async def answer(self, request: RadiusRequest, client: RadiusClient) -> bytes | None:
        """The signed Accounting-Response once the report is stored; None (no answer) if it
        could not be."""
        if request.code is RadiusCode.STATUS_SERVER:
            return encode_reply(request, RadiusCode.ACCOUNTING_RESPONSE, client.secret)
        report = session_report(request, client, self._protocol)
        if report is not None:
            try:
                await self._sessions.record(report)
            except Unavailable as exc:
                log.warning("store unavailable, accounting report of client %s left unanswered: %s",
                            client.name, exc)
                return None
        self._metrics.report(report.status.value if report is not None else OTHER_STATUS)
        return encode_reply(request, RadiusCode.ACCOUNTING_RESPONSE, client.secret, message_authenticator=False)


def accounting_listen(configured: Iterable[str] | None, radius_listen: Iterable[tuple[str, int]]) -> list[str]:
    """The accounting addresses: as configured, else each RADIUS listen host on port 1813
    (the authentication port plus one when that is not 1812, as RADIUS pairs them;
    port 0 stays 0, a free port each)."""
    if configured is not None:
        return list(configured)
    out = []
    for host, port in radius_listen:
        acct = 0 if port == 0 else port + 1
        out.append(f"[{host}]:{acct}" if ":" in host else f"{host}:{acct}")
    return out


class AccountingServer:
    """The UDP accounting listener: ``start()``/``run()`` and ``aclose()``.

    It shares the authentication listener's settings type (listen, reuse_port,
    max_in_flight, client_rate, handler_timeout, duplicate_ttl, drain_timeout) and its
    packet metrics, so Accounting-Requests show in ``mfad_radius_packets_*`` by code.
    """

    def __init__(self, settings: RadiusServerSettings, clients: ClientTable, handler: AccountingHandler, *,
                 metrics: RadiusMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings: Final = settings
        self.clients: Final = clients
        self.metrics: Final[RadiusMetrics] = metrics if metrics is not None else NullMetrics()
        self._handler = handler
        self._clock = clock
        self._cache = ReplyCache(ttl=settings.duplicate_ttl, max_entries=settings.max_cached_replies)
        self._limiter = TokenBuckets(rate=settings.client_rate, burst=settings.client_burst)
        self._listeners = UdpListeners(self, "RADIUS accounting")
        self._deadlines = Deadlines(settings.handler_timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = False
        self._closed = asyncio.Event()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self._listeners.addresses

    async def start(self) -> None:
        if self._listeners:
            return
        await self._listeners.bind(self.settings)
        self._accepting = True
        log.info("RADIUS accounting listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def run(self) -> None:
        """Serve until :meth:`aclose`; :meth:`start` binds first."""
        if not self._listeners and not self._closed.is_set():
            raise RadiusError("AccountingServer.run() before start()")
        await self._closed.wait()

    async def aclose(self) -> None:
        self._accepting = False
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.drain_timeout)
            for task in pending:
                task.cancel()
        self._deadlines.close()
        await self._listeners.close()
        self._closed.set()

    def receive(self, listener: RadiusProtocol, data: bytes, addr: Address) -> None:
        metrics = self.metrics
        metrics.packet_received(code_name(data[0]) if data else "other")
        client = self.clients.lookup(addr[0])
        if not self._accepting:
            metrics.packet_dropped(DropReason.SHUTDOWN, client.name if client is not None else UNKNOWN_CLIENT_LABEL)
            return
        if client is None:
            metrics.packet_dropped(DropReason.UNKNOWN_CLIENT, UNKNOWN_CLIENT_LABEL)
            return
        if len(data) < HEADER_LENGTH:
            metrics.packet_dropped(DropReason.MALFORMED, client.name)
            return
        now = self._clock()
        if not self._limiter.allow(client.name, now):
            metrics.packet_dropped(DropReason.RATE_LIMITED, client.name)
            return
        key = RequestKey(addr[0], addr[1], data[1], data[4:HEADER_LENGTH])
        cached = self._cache.lookup(key, now)
        if cached is not None:
            metrics.packet_dropped(DropReason.DUPLICATE, client.name)
            if isinstance(cached, bytes):
                listener.send(cached, addr)
            return
        if len(self._tasks) >= self.settings.max_in_flight:
            metrics.packet_dropped(DropReason.OVERLOAD, client.name)
            return
        request = decode_accounting(data, client, addr[0], metrics)
        if request is None:
            return
        self._cache.begin(key)
        task = asyncio.get_running_loop().create_task(self._answer(listener, request, client, key, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, listener: RadiusProtocol, request: RadiusRequest, client: RadiusClient,
                      key: RequestKey, addr: Address) -> None:
        reply = None
        watch = self._deadlines.watch()
        try:
            reply = await self._handler.answer(request, client)
        except asyncio.CancelledError:
            if not watch.expired_now():
                raise
            self.metrics.packet_dropped(DropReason.TIMEOUT, client.name)
        except Exception:
            log.exception("RADIUS accounting request of client %s could not be recorded", client.name)
            self.metrics.packet_dropped(DropReason.HANDLER_ERROR, client.name)
        finally:
            watch.done()
            if reply is None:
                self._cache.forget(key)
        if reply is None:
            self.metrics.packet_dropped(DropReason.NO_REPLY, client.name)
            return
        self._cache.complete(key, reply, self._clock())
        listener.send(reply, addr)


def decode_accounting(data: bytes, client: RadiusClient, host: str, metrics: RadiusMetrics) -> RadiusRequest | None:
    """One strict parse for the accounting port (Accounting-Request, Status-Server), or
    None (dropped and counted)."""
    request = decode_request(data, client.secret, host, codes=ACCOUNTING_CODES)
    if isinstance(request, PacketFault):
        metrics.packet_dropped(DropReason.BAD_AUTHENTICATOR if request is PacketFault.BAD_AUTHENTICATOR
                               else DropReason.MALFORMED, client.name)
        return None
    if request.code is RadiusCode.STATUS_SERVER and is_missing_message_authenticator(request, client):
        metrics.packet_dropped(DropReason.MISSING_MESSAGE_AUTHENTICATOR, client.name)
        return None
    return request


__all__ = ["AccountingHandler", "AccountingServer", "PrometheusAccountingMetrics", "accounting_listen",
           "decode_accounting", "session_report"]
