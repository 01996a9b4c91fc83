"""The RADIUS authentication listener: UDP sockets, admission, duplicates, replies.

Per datagram, in this order: the source address must belong to a configured client
(else dropped as ``unknown_client``); at least a header; the client's rate limit;
Status-Server is answered at once with an Access-Accept (RFC 5997, Message-Authenticator
required); a retransmission of a request being decided is not processed again, and
one whose reply exists gets the same octets back (RFC 5080); beyond ``max_in_flight``
requests being decided, or beyond the client's share of them, new ones are dropped as
``overload``; then one strict parse
with Message-Authenticator verification, the Message-Authenticator policy of the
client, and one task per request that asks the handler.

Guarantees:

- No exception escapes ``datagram_received``, and garbage gets no reply.
- Each of the ``n`` configured clients may have ``max_in_flight // n`` requests (at
  least one) in flight, and that share is kept for it: a flooding client cannot push
  another's requests out. Requests shed (rate limit, overload, timeout) are counted per
  client.
- A handler fault, a timeout or :data:`~mfad.radius.handler.NO_REPLY` sends nothing
  (the NAS fails over); nothing but a handler's Decision.accept produces an
  Access-Accept to an Access-Request.
- With a shared cache, a request another instance already answered gets that reply;
  with a claiming one, a request another instance is deciding gets the reply that
  instance saved by the end of ``shared_wait`` (one look then, or at shutdown — no
  polling of the store), or silence — never a second decision. A reply decided here is
  sent first and shared after (the NAS does not wait for the store's write).
- A request the handler defers (:class:`~mfad.radius.handler.Deferred`, hold mode) is
  kept without a task or an in-flight slot until the handler settles it; its
  retransmissions get nothing meanwhile (the handler is told of each), then the very
  reply it got. With a claiming shared cache its claim is kept for the hold, so no
  other instance decides it either.
- Access-Rejects leave after ``reject_delay`` through ``loop.call_later``: the
  waiting holds no task and no in-flight slot, and a retransmission during the wait
  does not get the reject early.
- Without ``reuse_port`` no socket option lets another process bind the same port:
  a second daemon fails with :class:`RadiusBindError` instead of silently sharing it.
- ``aclose()`` stops admitting packets, lets requests being decided finish for at
  most ``drain_timeout`` seconds, cancels the rest, sends the rejects still waiting
  out their delay, then closes the sockets.

Nothing here logs a secret, a password or packet contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol, cast

from mfad.net import parse_address
from mfad.radius.attributes import Attr
from mfad.radius.cache import Claim, ClaimingReplyCache, ReplyCache, RequestKey, SharedReplyCache
from mfad.radius.signed import SignedClients
from mfad.radius.clients import ClientTable, RadiusClient
from mfad.radius.codec import (
    HEADER_LENGTH,
    PacketFault,
    RadiusCode,
    RadiusRequest,
    code_name,
    decode_request,
    encode_reply,
)
from mfad.radius.errors import RadiusBindError, RadiusConfigError, RadiusEncodeError, RadiusError
from mfad.radius.handler import Decision, Deferred, NoReply, Outcome, RadiusHandler
from mfad.radius.limits import TokenBuckets
from mfad.radius.deadlines import Deadlines
from mfad.radius.drops import DropLog
from mfad.radius.metrics import SHED_REASONS, UNKNOWN_CLIENT_LABEL, DropReason, NullMetrics, RadiusMetrics

log = logging.getLogger("mfad.radius")

_SOCKET_CLOSE_TIMEOUT: Final = 2.0
"""Closing a UDP transport or a cancelled task takes a loop iteration; this bounds a stuck one."""

Address = tuple[Any, ...]
"""A socket address as asyncio reports it: (host, port) or (host, port, flow, scope)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusServerSettings:
    """Listener settings; every value has a safe default."""

    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 1812),)
    """IP literals and ports; port 0 picks a free port (tests)."""
    reuse_port: bool = False
    """Set SO_REUSEPORT so N worker processes share the port; never for a single process."""
    max_in_flight: int = 1024
    """Requests being decided at once; more are dropped as ``overload``."""
    client_rate: float = 1000.0
    """Packets per second per client (0 = unlimited)."""
    client_burst: int = 2000
    reject_delay: float = 1.0
    """Seconds an Access-Reject waits (FreeRADIUS ``reject_delay``): slows guessing."""
    handler_timeout: float = 5.0
    """Past this the NAS has retransmitted or given up; the request gets no reply."""
    duplicate_ttl: float = 10.0
    """Seconds a reply is re-sent for retransmissions (a NAS retries for ~3 x 3 s)."""
    max_cached_replies: int = 100_000
    shared_cache_timeout: float = 0.5
    shared_wait: float = 1.0
    """Seconds a retransmission waits for another instance that is deciding its request,
    then looks for that instance's reply once. Shorter than a NAS's retransmission
    interval (3 s and more), so the reply still beats the NAS's next try."""
    receive_buffer: int = 4 * 1024 * 1024
    """SO_RCVBUF asked for (the kernel may cap it): absorbs bursts while the loop is busy."""
    drain_timeout: float = 5.0

    def __post_init__(self) -> None:
        problems = [
            name
            for name, ok in (
                ("listen", bool(self.listen)),
                ("max_in_flight", self.max_in_flight >= 1),
                ("client_rate", self.client_rate >= 0),
                ("client_burst", self.client_burst >= 1),
                ("reject_delay", 0 <= self.reject_delay <= 10),
                ("handler_timeout", self.handler_timeout > 0),
                ("duplicate_ttl", self.duplicate_ttl > 0),
                ("max_cached_replies", self.max_cached_replies >= 1),
                ("shared_cache_timeout", self.shared_cache_timeout > 0),
                ("shared_wait", self.shared_wait >= 0),
                ("drain_timeout", self.drain_timeout >= 0),
            )
            if not ok
        ]
        if problems:
            raise RadiusConfigError("invalid RADIUS server settings: " + ", ".join(problems))
        for host, port in self.listen:
            _ip_family(host)
            if not 0 <= port <= 65535:
                raise RadiusConfigError(f"RADIUS listen port out of range: {port}")


def parse_listen_address(text: str) -> tuple[str, int]:
    """``"0.0.0.0:1812"`` or ``"[::1]:1812"`` to ``(host, port)``; hosts are IP literals."""
    try:
        host, port = parse_address(text.strip())
    except ValueError as exc:
        raise RadiusConfigError(f"RADIUS listen address {text!r}: {exc}") from None
    _ip_family(host)
    return host, port


def is_missing_message_authenticator(request: RadiusRequest, client: RadiusClient) -> bool:
    """True when the request lacks a Message-Authenticator that policy requires (drop it).

    RFC 5997 requires it on Status-Server and RFC 3579 with EAP-Message; the client
    may require it (the default); and with ``limit_proxy_state`` a request carrying
    Proxy-State needs it (the FreeRADIUS BlastRADIUS mitigation for old NASes).
    """
    if request.has_message_authenticator:
        return False
    return (
        request.code is RadiusCode.STATUS_SERVER
        or client.require_message_authenticator
        or request.has(Attr.EAP_MESSAGE)
        or (client.limit_proxy_state and request.has(Attr.PROXY_STATE))
    )


class DatagramSink(Protocol):
    """What a :class:`RadiusProtocol` feeds: this module's server, or the accounting one."""

    @property
    def metrics(self) -> RadiusMetrics: ...

    def receive(self, listener: RadiusProtocol, data: bytes, addr: Address) -> None: ...


class RadiusProtocol(asyncio.DatagramProtocol):
    """One bound socket of a :class:`RadiusServer`; everything else is the server's."""

    def __init__(self, server: DatagramSink) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost.set()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._server.receive(self, data, addr)
        except Exception:
            # A bug, not an input: keep serving, and say so loudly (without the packet).
            log.exception("RADIUS datagram from %s could not be handled", addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (port unreachable …): nothing to do.
        log.debug("RADIUS socket error: %s", exc)

    def send(self, packet: bytes, addr: Address) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.sendto(packet, addr)
        self._server.metrics.packet_sent(code_name(packet[0]))


class UdpListeners:
    """The bound UDP sockets of one listener (authentication or accounting), all or none."""

    def __init__(self, sink: DatagramSink, what: str) -> None:
        self._sink = sink
        self._what = what
        self._protocols: list[RadiusProtocol] = []

    def __len__(self) -> int:
        return len(self._protocols)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of each socket, in ``listen`` order."""
        bound = []
        for listener in self._protocols:
            if listener.transport is not None:
                name = listener.transport.get_extra_info("sockname")
                bound.append((str(name[0]), int(name[1])))
        return bound

    async def bind(self, settings: RadiusServerSettings) -> None:
        """Bind every ``settings.listen`` address, or none (raises :class:`RadiusBindError`)."""
        loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = []
        try:
            for host, port in settings.listen:
                sockets.append(_open_socket(host, port, settings))
            for sock in sockets:
                _, protocol = await loop.create_datagram_endpoint(lambda: RadiusProtocol(self._sink), sock=sock)
                self._protocols.append(protocol)
        except BaseException:
            for sock in sockets[len(self._protocols):]:
                sock.close()
            await self.close()
            self._protocols.clear()
            raise

    async def close(self) -> None:
        for listener in self._protocols:
            if listener.transport is not None:
                listener.transport.close()
        # The port is free only once the transports have really let go of it.
        try:
            async with asyncio.timeout(_SOCKET_CLOSE_TIMEOUT):
                for listener in self._protocols:
                    await listener.lost.wait()
        except TimeoutError:
            log.warning("%s sockets did not close within %.0f s", self._what, _SOCKET_CLOSE_TIMEOUT)


class Answer(NamedTuple):
    """A reply to send at ``send_at``; ``decided_here`` unless it came from the shared cache."""

    packet: bytes
    send_at: float
    decided_here: bool


class RadiusServer:
    """The RADIUS listener service: ``start()``/``run()`` and ``aclose()``."""

    def __init__(
        self,
        settings: RadiusServerSettings,
        clients: ClientTable,
        handler: RadiusHandler,
        *,
        metrics: RadiusMetrics | None = None,
        shared_cache: SharedReplyCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        signed: SignedClients | None = None,
    ) -> None:
        self.settings: Final = settings
        self.clients: Final = clients
        self.metrics: Final[RadiusMetrics] = metrics if metrics is not None else NullMetrics()
        self._handler = handler
        self._shared = shared_cache
        #: NASes that have sent a Message-Authenticator (their clients' "auto").
        self.signed: Final = signed
        self._clock = clock
        self._drop_log = DropLog(clock)
        self._cache = ReplyCache(
            ttl=settings.duplicate_ttl, max_entries=settings.max_cached_replies
        )
        self._limiter, self._share = self._client_limits(clients)
        self._in_flight_of: dict[str, int] = {}
        self._listeners = UdpListeners(self, "RADIUS")
        self._deadlines = Deadlines(settings.handler_timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        self._delayed: dict[int, tuple[asyncio.TimerHandle, RadiusProtocol, bytes, Address]] = {}
        #: Requests deferred by the handler (hold mode), by their cache key.
        self._held: dict[tuple[str, int, int, bytes], Deferred] = {}
        self._next_delayed = 0
        self._in_flight = 0
        self._accepting = False
        self._closing = False
        self._stopping = asyncio.Event()  # aclose() began: waits for peers end early
        self._closed = asyncio.Event()

    def _client_limits(self, clients: ClientTable) -> tuple[TokenBuckets, int]:
        settings = self.settings
        limiter = TokenBuckets(rate=settings.client_rate, burst=settings.client_burst, per_key={
            c.name: (c.rate_per_second, max(1.0, 2 * c.rate_per_second))  # two seconds' worth of burst
            for c in clients if c.rate_per_second is not None})
        # Each client's share of the in-flight cap, kept for it whether it uses it or not:
        # requests wait seconds at most (handler_timeout), so a share is never idle for long.
        return limiter, max(1, settings.max_in_flight // max(1, len(clients)))

    def replace_clients(self, clients: ClientTable) -> None:
        """A reload: new clients, secrets and rates from the next packet on. Requests being
        decided finish with the client they were matched to; their slots are freed by name."""
        self.clients.replace(clients)
        self._limiter, self._share = self._client_limits(self.clients)
        self._warn_about_clients()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def held(self) -> int:
        """Requests the handler deferred and has not answered yet (hold mode)."""
        return len(self._held)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of each listener, in ``settings.listen`` order."""
        return self._listeners.addresses

    def protocol(self) -> RadiusProtocol:
        """A protocol feeding this server, for a transport the caller provides."""
        self._accepting = not self._closing
        return RadiusProtocol(self)

    async def start(self) -> None:
        """Bind every listen address, or none (raises :class:`RadiusBindError`)."""
        if self._closing:
            raise RadiusError("a closed RADIUS server cannot start again")
        if self._listeners:
            return
        self._warn_about_clients()
        await self._listeners.bind(self.settings)
        self._accepting = True
        log.info("RADIUS listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))
        if not len(self.clients):
            log.warning("no [[radius.clients]] configured: every RADIUS request is dropped (unknown client)")

    async def run(self) -> None:
        """Serve until :meth:`aclose` is called; :meth:`start` binds first (it raises, this
        does not bind)."""
        if not self._listeners and not self._closing:
            raise RadiusError("RadiusServer.run() before start()")
        await self._closed.wait()

    async def aclose(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._accepting = False
        self._stopping.set()
        try:
            if self._tasks:
                _, pending = await asyncio.wait(
                    set(self._tasks), timeout=self.settings.drain_timeout
                )
                for task in pending:
                    task.cancel()
                if pending:
                    log.warning(
                        "RADIUS shutdown cancelled %d requests still being decided", len(pending)
                    )
                    # A handler that swallows its cancellation must not hold shutdown.
                    await asyncio.wait(pending, timeout=_SOCKET_CLOSE_TIMEOUT)
            for handle, listener, packet, addr in list(self._delayed.values()):
                handle.cancel()
                listener.send(packet, addr)
            self._delayed.clear()
            await self._abandon_held()
        finally:
            self._deadlines.close()
            await self._listeners.close()
            self._closed.set()

    # The per-datagram path. Synchronous up to the task, so garbage costs no task.

    def receive(self, listener: RadiusProtocol, data: bytes, addr: Address) -> None:
        metrics = self.metrics
        metrics.packet_received(code_name(data[0]) if data else "other")
        if not self._accepting:
            known = self.clients.lookup(addr[0])
            metrics.packet_dropped(DropReason.SHUTDOWN, known.name if known is not None else UNKNOWN_CLIENT_LABEL)
            return
        host = addr[0]
        client = self.clients.lookup(host)
        if client is None:
            self._drop(DropReason.UNKNOWN_CLIENT, host, None)
            return
        if len(data) < HEADER_LENGTH:
            self._drop(DropReason.MALFORMED, host, client, PacketFault.TOO_SHORT)
            return
        now = self._clock()
        if not self._limiter.allow(client.name, now):
            self._drop(DropReason.RATE_LIMITED, host, client)
            return
        if data[0] == RadiusCode.STATUS_SERVER:
            self._answer_status(listener, data, addr, client)
            return
        key = RequestKey(host, addr[1], data[1], data[4:HEADER_LENGTH])
        cached = self._cache.lookup(key, now)
        if cached is not None:
            self._drop(DropReason.DUPLICATE, host, client)
            if isinstance(cached, bytes):
                listener.send(cached, addr)
            elif self._held:
                deferred = self._held.get((key[0], key[1], key[2], key[3]))
                if deferred is not None:
                    deferred.retransmitted()
            return
        if not self._has_room(client.name):
            self._drop(DropReason.OVERLOAD, host, client)
            return
        request = self._admit(data, host, client)
        if request is None:
            return
        self._cache.begin(key)
        self._take_slot(client.name)
        task = asyncio.get_running_loop().create_task(
            self._decide(listener, request, client, key, addr, now)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admit(self, data: bytes, host: str, client: RadiusClient) -> RadiusRequest | None:
        request = decode_request(data, client.secret, host)
        if isinstance(request, PacketFault):
            if request is PacketFault.BAD_AUTHENTICATOR:
                self._drop(DropReason.BAD_AUTHENTICATOR, host, client)
            else:
                self._drop(DropReason.MALFORMED, host, client, request)
            return None
        if is_missing_message_authenticator(request, client):
            self._drop(DropReason.MISSING_MESSAGE_AUTHENTICATOR, host, client)
            return None
        if client.learn_message_authenticator and self.signed is not None:
            if request.has_message_authenticator:
                self.signed.signed(client.name, host)
            elif self.signed.requires(client.name, host):
                self._drop(DropReason.MISSING_MESSAGE_AUTHENTICATOR, host, client)
                return None
        return request

    def _has_room(self, name: str) -> bool:
        return self._in_flight_of.get(name, 0) < self._share and self._in_flight < self.settings.max_in_flight

    def _take_slot(self, name: str) -> None:
        self._in_flight_of[name] = self._in_flight_of.get(name, 0) + 1
        self._in_flight += 1

    def _free_slot(self, name: str) -> None:
        self._in_flight_of[name] -= 1
        self._in_flight -= 1

    def _answer_status(
        self, listener: RadiusProtocol, data: bytes, addr: Address, client: RadiusClient
    ) -> None:
        request = self._admit(data, addr[0], client)
        if request is not None:
            listener.send(encode_reply(request, RadiusCode.ACCESS_ACCEPT, client.secret), addr)

    async def _decide(
        self,
        listener: RadiusProtocol,
        request: RadiusRequest,
        client: RadiusClient,
        key: RequestKey,
        addr: Address,
        received_at: float,
    ) -> None:
        try:
            answer = await self._answer(request, client, key, received_at)
        except BaseException:
            # Cancelled at shutdown: a retransmission to another server must be decided afresh.
            self._cache.forget(key)
            raise
        finally:
            self._free_slot(client.name)
        if answer is None:
            self._cache.forget(key)
            return
        if isinstance(answer, Deferred):
            self._hold(answer, listener, request, client, key, addr, received_at)
            return
        await self._deliver(listener, addr, key, answer)

    def _send(self, listener: RadiusProtocol, addr: Address, packet: bytes, send_at: float) -> None:
        delay = send_at - self._clock()
        if delay <= 0:
            listener.send(packet, addr)
            return
        ident = self._next_delayed
        self._next_delayed += 1
        handle = asyncio.get_running_loop().call_later(delay, self._send_delayed, ident)
        self._delayed[ident] = (handle, listener, packet, addr)

    def _hold(self, deferred: Deferred, listener: RadiusProtocol, request: RadiusRequest, client: RadiusClient,
              key: RequestKey, addr: Address, received_at: float) -> None:
        """Keep a deferred request until its handler settles it (no task, no slot)."""
        plain = (key[0], key[1], key[2], key[3])
        self._held[plain] = deferred

        async def finish(decision: Decision | NoReply) -> None:
            if self._held.pop(plain, None) is None:
                return  # abandoned meanwhile (shutdown)
            # Latency from the decision's arrival: the hold itself is the user's time, not mfad's.
            answer = await self._reply(request, client, key, self._clock(), decision)
            if answer is None:
                self._cache.forget(key)
                if self._shared is not None:
                    await self._release_shared(key)
                return
            await self._deliver(listener, addr, key, answer)

        early = deferred.attach(finish)
        if early is not None:
            self._track(asyncio.get_running_loop().create_task(early))
        elif isinstance(self._shared, ClaimingReplyCache):
            # Keep the claim for the hold, so that no other instance decides the request meanwhile.
            self._track(asyncio.get_running_loop().create_task(self._extend_shared(key, deferred.hold_seconds)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _abandon_held(self) -> None:
        held, self._held = self._held, {}
        for plain, deferred in held.items():
            deferred.abandon()
            key = RequestKey(*plain)
            self._cache.forget(key)
            if self._shared is not None:  # another server may decide it afresh
                await self._release_shared(key)
        if held:
            log.warning("RADIUS shutdown left %d held requests unanswered", len(held))

    async def _answer(
        self, request: RadiusRequest, client: RadiusClient, key: RequestKey, received_at: float
    ) -> Answer | Deferred | None:
        """The reply and when to send it, or None for silence (already counted)."""
        claimed = False
        if self._shared is not None:
            shared = await self._claim_shared(key)
            if shared is Claim.IN_FLIGHT:
                shared = await self._wait_for_peer(key)
                if shared is None:
                    # Still being decided elsewhere: stay silent, the NAS retransmits.
                    self._drop(DropReason.DUPLICATE, key.host, client)
                    return None
            if isinstance(shared, bytes):
                self._drop(DropReason.DUPLICATE, key.host, client)
                now = self._clock()
                self._cache.complete(key, shared, now)
                return Answer(shared, now, decided_here=False)
            claimed = shared is Claim.OWNED
        answer = await self._answer_here(request, client, key, received_at)
        if answer is None and claimed:
            await self._release_shared(key)
        return answer

    async def _answer_here(
        self, request: RadiusRequest, client: RadiusClient, key: RequestKey, received_at: float
    ) -> Answer | Deferred | None:
        watch = self._deadlines.watch()
        try:
            decision = await self._handler(request, client)
        except asyncio.CancelledError:
            if not watch.expired_now():
                raise
            self._drop(DropReason.TIMEOUT, key.host, client)
            return None
        except Exception:
            log.exception(
                "RADIUS handler failed (client %s, id %d)", client.name, request.identifier
            )
            self._drop(DropReason.HANDLER_ERROR, key.host, client)
            return None
        finally:
            watch.done()
        if isinstance(decision, Deferred):
            return decision
        return await self._reply(request, client, key, received_at, decision)

    async def _reply(self, request: RadiusRequest, client: RadiusClient, key: RequestKey, received_at: float,
                     decision: Decision | NoReply) -> Answer | None:
        """The handler's decision as the reply to send and when (cached here), or None."""
        if isinstance(decision, NoReply):
            self._drop(DropReason.NO_REPLY, key.host, client)
            return None
        if not isinstance(decision, Decision):
            log.error("RADIUS handler returned %s, not a Decision", type(decision).__name__)
            self._drop(DropReason.HANDLER_ERROR, key.host, client)
            return None
        try:
            packet = encode_reply(request, decision.code, client.secret, decision.encoded)
        except RadiusEncodeError as exc:
            log.error("RADIUS reply for client %s cannot be encoded: %s", client.name, exc)
            self._drop(DropReason.HANDLER_ERROR, key.host, client)
            return None
        now = self._clock()
        send_at = now + (self.settings.reject_delay if decision.outcome is Outcome.REJECT else 0.0)
        self._cache.complete(key, packet, send_at)
        self.metrics.reply_decided(client.mode, decision.outcome)
        self.metrics.request_latency(now - received_at)
        return Answer(packet, send_at, decided_here=True)

    async def _deliver(self, listener: RadiusProtocol, addr: Address, key: RequestKey, answer: Answer) -> None:
        """Send the reply, then share a reply decided here. The NAS does not wait for the
        save: a retransmission that reaches another instance meanwhile finds this one's
        claim and looks again after ``shared_wait``."""
        self._send(listener, addr, answer.packet, answer.send_at)
        if answer.decided_here and self._shared is not None:
            await self._save_shared(key, answer.packet)

    async def _claim_shared(self, key: RequestKey) -> bytes | Claim | None:
        """The saved reply, a claim, or None (no shared answer: decide here)."""
        shared = self._shared
        assert shared is not None
        try:
            async with asyncio.timeout(self.settings.shared_cache_timeout):
                if isinstance(shared, ClaimingReplyCache):
                    # Held past the handler's deadline, so a slow decision keeps its claim.
                    hold = self.settings.handler_timeout + 2 * self.settings.shared_cache_timeout
                    return await shared.claim_reply(key, hold)
                return await shared.load_reply(key)
        except Exception as exc:  # a cache fault must not decide the request
            log.warning("shared RADIUS reply cache lookup failed: %s", type(exc).__name__)
            return None

    async def _wait_for_peer(self, key: RequestKey) -> bytes | None:
        """The reply of the instance deciding ``key``, looked for once: after ``shared_wait``
        or when shutdown begins. Another instance's save gives this process no signal (a
        NOTIFY on every saved reply would cost each request a commit-time lock), and a
        poll would cost the store a read every few milliseconds per waiting request."""
        assert self._shared is not None
        if self.settings.shared_wait > 0 and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.shared_wait):
                    await self._stopping.wait()
        try:
            async with asyncio.timeout(self.settings.shared_cache_timeout):
                return await self._shared.load_reply(key)
        except Exception as exc:
            log.warning("shared RADIUS reply cache lookup failed: %s", type(exc).__name__)
            return None

    async def _extend_shared(self, key: RequestKey, seconds: float) -> None:
        shared = self._shared
        extend = getattr(shared, "extend_claim", None)
        if extend is None:
            return
        try:
            async with asyncio.timeout(self.settings.shared_cache_timeout):
                await extend(key, seconds + self.settings.handler_timeout)
        except Exception as exc:  # then another instance may decide a retransmission afresh
            log.warning("shared RADIUS claim not extended for a held request: %s", type(exc).__name__)

    async def _release_shared(self, key: RequestKey) -> None:
        shared = self._shared
        if not isinstance(shared, ClaimingReplyCache):
            return
        try:
            async with asyncio.timeout(self.settings.shared_cache_timeout):
                await shared.release_reply(key)
        except Exception as exc:  # the claim then expires by itself
            log.warning("shared RADIUS claim release failed: %s", type(exc).__name__)

    async def _save_shared(self, key: RequestKey, packet: bytes) -> None:
        assert self._shared is not None
        try:
            async with asyncio.timeout(self.settings.shared_cache_timeout):
                await self._shared.save_reply(key, packet, self.settings.duplicate_ttl)
        except Exception as exc:
            log.warning("shared RADIUS reply cache save failed: %s", type(exc).__name__)

    def _send_delayed(self, ident: int) -> None:
        entry = self._delayed.pop(ident, None)
        if entry is not None:
            _, listener, packet, addr = entry
            listener.send(packet, addr)

    def _drop(
        self,
        reason: DropReason,
        host: str,
        client: RadiusClient | None,
        fault: PacketFault | None = None,
    ) -> None:
        name = client.name if client is not None else UNKNOWN_CLIENT_LABEL
        self.metrics.packet_dropped(reason, name)
        if client is not None and reason in SHED_REASONS:
            self.metrics.request_shed(client.name, reason)
        self._drop_log.dropped(reason, host, client.name if client is not None else None,
                               f" ({fault.value})" if fault is not None else "")

    def _warn_about_clients(self) -> None:
        for client in self.clients:
            if client.require_message_authenticator:
                continue
            if client.learn_message_authenticator:
                log.info("RADIUS client %s: Message-Authenticator required once it has sent one (auto)",
                         client.name)
                continue
            if client.limit_proxy_state:
                log.warning(
                    "RADIUS client %s does not require Message-Authenticator (old NAS); "
                    "requests with Proxy-State still need it",
                    client.name,
                )
            else:
                log.error(
                    "RADIUS client %s requires neither Message-Authenticator nor limits "
                    "Proxy-State: forged Access-Accepts are possible (BlastRADIUS)",
                    client.name,
                )


def _ip_family(host: str) -> socket.AddressFamily:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise RadiusConfigError(f"RADIUS listen host must be an IP address, got {host!r}") from None
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _open_socket(host: str, port: int, settings: RadiusServerSettings) -> socket.socket:
    family = _ip_family(host)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            # "::" must not also take IPv4: listen lists say which families they want.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if settings.reuse_port:
            option = getattr(socket, "SO_REUSEPORT", None)
            if option is None:
                raise RadiusConfigError("reuse_port needs SO_REUSEPORT, which this system lacks")
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.receive_buffer)
        except OSError:
            log.debug("RADIUS receive buffer of %d octets refused", settings.receive_buffer)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RadiusBindError(
                exc.errno, f"cannot bind RADIUS listener {host}:{port}: {exc.strerror}"
            ) from None
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
