"""What the RADIUS server reports, as a small interface the observability module implements.

The server calls a :class:`RadiusMetrics` on every packet; implementations must be
cheap and must not raise. Labels are bounded sets (packet code names from
:func:`mfad.radius.codec.code_name`, :class:`DropReason`, client modes, outcomes):
never a user name, an address or a client name.

:class:`CountingMetrics` keeps plain counters in memory, for tests and for embedding
without Prometheus.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from typing import Protocol

from mfad.radius.clients import ClientMode
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


class RadiusMetrics(Protocol):
    def packet_received(self, code: str) -> None: ...

    def packet_sent(self, code: str) -> None: ...

    def packet_dropped(self, reason: DropReason) -> None: ...

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        """A handler's decision was encoded (counted once, not per retransmission)."""
        ...

    def request_latency(self, seconds: float) -> None:
        """From the datagram's arrival to its reply being ready (a reject delay excluded)."""
        ...


class NullMetrics:
    def packet_received(self, code: str) -> None:
        pass

    def packet_sent(self, code: str) -> None:
        pass

    def packet_dropped(self, reason: DropReason) -> None:
        pass

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        pass

    def request_latency(self, seconds: float) -> None:
        pass


class CountingMetrics:
    """In-memory counters: ``received["Access-Request"]``, ``dropped[DropReason.MALFORMED]`` …"""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[DropReason] = Counter()
        self.decided: Counter[tuple[ClientMode, Outcome]] = Counter()
        self.latencies: list[float] = []

    def packet_received(self, code: str) -> None:
        self.received[code] += 1

    def packet_sent(self, code: str) -> None:
        self.sent[code] += 1

    def packet_dropped(self, reason: DropReason) -> None:
        self.dropped[reason] += 1

    def reply_decided(self, mode: ClientMode, outcome: Outcome) -> None:
        self.decided[(mode, outcome)] += 1

    def request_latency(self, seconds: float) -> None:
        if len(self.latencies) < 100_000:
            self.latencies.append(seconds)
