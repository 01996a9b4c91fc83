"""What the RADIUS server reports, as a small interface the observability module implements.

The server calls a :class:`RadiusMetrics` on every packet; implementations must be
cheap and must not raise. Labels are bounded sets (packet code names from
:func:`mfad.radius.codec.code_name`, :class:`DropReason`, client modes, outcomes, and
the names of the configured clients, for shed requests): never a user name or an
address.

:class:`CountingMetrics` keeps plain counters in memory, for tests and for embedding
without Prometheus; :class:`PrometheusRadiusMetrics` is what the daemon registers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, Protocol, Self

from prometheus_client import CollectorRegistry

from mfad.observability.lean import LeanCounter, LeanHistogram

from mfad.radius.clients import ClientMode
from mfad.radius.codec import RadiusCode, code_name
from mfad.radius.handler import Outcome


class DropReason(StrEnum):
    """Why a received packet got no (new) answer."""

    UNKNOWN_CLIENT = "unknown_client"
    MALFORMED = "malformed"
    BAD_AUTHENTICATOR = "bad_authenticator"
    MISSING_MESSAGE_AUTHENTICATOR = "missing_message_authenticator"
    """Required and absent; or Proxy-State, EAP-Message or Status-Server without one."""
    DUPLICATE = "duplicate"
    """A retransmission: not processed again (answered from the cache when its reply exists)."""
    OVERLOAD = "overload"
    RATE_LIMITED = "rate_limited"
    NO_REPLY = "no_reply"
    """The handler chose silence (store unavailable)."""
    HANDLER_ERROR = "handler_error"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


SHED_REASONS = frozenset({DropReason.RATE_LIMITED, DropReason.OVERLOAD, DropReason.TIMEOUT})
"""Drops that mean a valid request went unanswered for lack of capacity: counted per client."""


class RadiusMetrics(Protocol):
    def packet_received(self, code: str) -> None: ...

    def packet_sent(self, code: str) -> None: ...

    def packet_dropped(self, reason: DropReason, client: str) -> None:
        """``client``: the configured client's name, or :data:`UNKNOWN_CLIENT_LABEL`."""
        ...

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        """A handler's decision was encoded (counted once, not per retransmission)."""
        ...

    def request_shed(self, client: str, reason: DropReason) -> None:
        """A configured client's request dropped for capacity (one of SHED_REASONS)."""
        ...

    def request_latency(self, seconds: float) -> None:
        """From the datagram's arrival to its reply being ready (a reject delay excluded)."""
        ...


UNKNOWN_CLIENT_LABEL = "unknown"
"""The client label of packets from sources no ``[[radius.clients]]`` entry matches: one
value for all of them, so that a scan of the internet cannot grow the series."""


class NullMetrics:
    def packet_received(self, code: str) -> None:
        pass

    def packet_sent(self, code: str) -> None:
        pass

    def packet_dropped(self, reason: DropReason, client: str) -> None:
        pass

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        pass

    def request_shed(self, client: str, reason: DropReason) -> None:
        pass

    def request_latency(self, seconds: float) -> None:
        pass


class WatchedCounters:
    """Counters one can wait on: ``await metrics.until(lambda m: m.sent["Access-Accept"] == 1)``
    returns once a change makes the predicate true (checked at each change, never polled)."""

    def __init__(self) -> None:
        # The predicates take the subclass's self (Self in until's signature).
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future[None]]] = []

    def _changed(self) -> None:
        for entry in list(self._waiters):
            predicate, done = entry
            if not done.done() and predicate(self):
                done.set_result(None)
                self._waiters.remove(entry)

    async def until(self, predicate: Callable[[Self], bool], timeout: float = 10.0) -> None:
        if predicate(self):
            return
        entry = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)


class CountingMetrics(WatchedCounters):
    """In-memory counters: ``received["Access-Request"]``, ``dropped[DropReason.MALFORMED]`` …"""

    def __init__(self) -> None:
        super().__init__()
        self.received: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[DropReason] = Counter()
        self.dropped_by_client: Counter[tuple[str, DropReason]] = Counter()
        self.decided: Counter[tuple[ClientMode, Outcome]] = Counter()
        self.shed: Counter[tuple[str, DropReason]] = Counter()
        self.latencies: list[float] = []

    def packet_received(self, code: str) -> None:
        self.received[code] += 1
        self._changed()

    def packet_sent(self, code: str) -> None:
        self.sent[code] += 1
        self._changed()

    def packet_dropped(self, reason: DropReason, client: str) -> None:
        self.dropped[reason] += 1
        self.dropped_by_client[(client, reason)] += 1
        self._changed()

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        self.decided[(mode, outcome)] += 1
        self._changed()

    def request_shed(self, client: str, reason: DropReason) -> None:
        self.shed[(client, reason)] += 1
        self._changed()

    def request_latency(self, seconds: float) -> None:
        if len(self.latencies) < 100_000:
            self.latencies.append(seconds)


LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds. A code check is a read and a group commit (≈0.5–10 ms); a password adds
argon2id (≈50–200 ms); the handler's deadline is 5 s. Reject delays are not included."""

_CODES = (*(code_name(code) for code in RadiusCode), "other")


class PrometheusRadiusMetrics:
    """The server's counters as Prometheus series on ``registry``.

    ``mfad_radius_packets_received_total{code}``, ``mfad_radius_packets_sent_total{code}``,
    ``mfad_radius_packets_dropped_total{client,reason}``, ``mfad_radius_replies_total{mode,outcome}``,
    ``mfad_radius_requests_shed_total{client,reason}`` and
    ``mfad_radius_request_duration_seconds``. Every label value is from a closed set (the
    client names from the configuration), and the expected series exist from the start
    (at 0) so that rates and alerts work before the first packet. Children are looked up
    once, and they are :mod:`mfad.observability.lean` ones: this runs per packet.
    """

    def __init__(self, registry: CollectorRegistry, clients: Iterable[str] = ()) -> None:
        clients = tuple(clients)
        received = LeanCounter("mfad_radius_packets_received", "RADIUS packets received, by packet code.",
                           ["code"], registry=registry)
        sent = LeanCounter("mfad_radius_packets_sent", "RADIUS packets sent, by packet code.", ["code"],
                       registry=registry)
        dropped = LeanCounter("mfad_radius_packets_dropped",
                          "RADIUS packets that got no new answer, by client (\"unknown\" for every source "
                          "that is no configured client) and reason (a duplicate may be answered from the "
                          "reply cache).", ["client", "reason"], registry=registry)
        replies = LeanCounter("mfad_radius_replies", "Access-Request decisions, by client mode and outcome "
                          "(once per request, not per retransmission).", ["mode", "outcome"], registry=registry)
        self._latency = LeanHistogram("mfad_radius_request_duration_seconds",
                                  "Time from an Access-Request's arrival to its reply being ready "
                                  "(reject delay excluded).", buckets=LATENCY_BUCKETS, registry=registry)
        self._received = {code: received.labels(code) for code in _CODES}
        self._sent = {code: sent.labels(code) for code in _CODES}
        self._dropped_family = dropped
        self._dropped = {(client, reason): dropped.labels(client, reason.value)
                         for client in (*clients, UNKNOWN_CLIENT_LABEL) for reason in DropReason}
        self._replies = {(mode, outcome): replies.labels(mode.value, outcome.value)
                         for mode in ClientMode for outcome in Outcome}
        shed = LeanCounter("mfad_radius_requests_shed", "Access-Requests of a configured client left "
                           "unanswered for lack of capacity, by client and reason (rate_limited, overload, "
                           "timeout).", ["client", "reason"], registry=registry)
        self._shed_family = shed
        self._shed = {(client, reason): shed.labels(client, reason.value)
                      for client in clients for reason in SHED_REASONS}

    def packet_received(self, code: str) -> None:
        self._received.get(code, self._received["other"]).inc()

    def packet_sent(self, code: str) -> None:
        self._sent.get(code, self._sent["other"]).inc()

    def packet_dropped(self, reason: DropReason, client: str) -> None:
        child = self._dropped.get((client, reason))
        if child is None:  # a client added by a reload: its series start now (names are configured ones)
            child = self._dropped[(client, reason)] = self._dropped_family.labels(client, reason.value)
        child.inc()

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        self._replies[(mode, outcome)].inc()

    def request_shed(self, client: str, reason: DropReason) -> None:
        child = self._shed.get((client, reason))
        if child is None:  # a client added by a reload (only configured clients are passed here)
            child = self._shed[(client, reason)] = self._shed_family.labels(client, reason.value)
        child.inc()

    def request_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)
