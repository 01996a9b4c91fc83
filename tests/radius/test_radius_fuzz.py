"""Property tests: random and mutated datagrams never raise, and garbage is never answered.

The parser is fed arbitrary octets, structurally plausible packets with random
attributes, and valid pyrad-built packets with random mutations. The listener is fed
the same through ``datagram_received`` on a recording transport: it must send exactly
one reply when the datagram is an admissible request and none otherwise, and log no
error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from radius_peers import SECRET, DemoPolicy, loopback_clients, pyrad_request

from mfad.radius import (
    ClientTable,
    CountingMetrics,
    DropReason,
    RadiusRequest,
    RadiusServer,
    RadiusServerSettings,
)
from mfad.radius.codec import RadiusCode, decode_request, encode_request
from mfad.radius.server import is_missing_message_authenticator

BASES = [
    pyrad_request(authenticator=bytes(range(16))).RequestPacket(),
    pyrad_request(
        user="alice", password="pw" * 20, proxy_states=[b"a", b"bc"], authenticator=bytes(16)
    ).RequestPacket(),
    pyrad_request(message_authenticator=False, authenticator=b"\x01" * 16).RequestPacket(),
    pyrad_request(code=12, authenticator=b"\x02" * 16).RequestPacket(),
    pyrad_request(state=b"s" * 16, authenticator=b"\x03" * 16).RequestPacket(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "set", "truncate", "extend", "length", "insert", "delete"])
        )
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "extend":
            data += draw(st.binary(max_size=64))
        elif kind == "length" and len(data) >= 4:
            data[2:4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
    return bytes(data)


@st.composite
def plausible(draw: st.DrawFn) -> bytes:
    attributes = draw(st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=12))
    return encode_request(
        RadiusCode(draw(st.sampled_from([1, 12]))),
        draw(st.integers(0, 255)),
        draw(st.binary(min_size=16, max_size=16)),
        SECRET,
        attributes,
        message_authenticator=draw(st.booleans()),
    )


datagrams = st.one_of(st.binary(max_size=4200), mutated(), plausible())


@given(datagrams, st.binary(min_size=1, max_size=40))
@settings(max_examples=600, deadline=None)
def test_parser_never_raises(data: bytes, secret: bytes) -> None:
    result = decode_request(data, secret)
    if isinstance(result, RadiusRequest):
        assert 20 <= len(data) <= 4096
        length = int.from_bytes(data[2:4], "big")
        assert sum(len(value) + 2 for _, value in result.attributes) == length - 20


class RecordingTransport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1812) if name == "sockname" else default


def admissible(data: bytes, require_message_authenticator: bool) -> bool:
    [client] = loopback_clients(require_message_authenticator=require_message_authenticator)[:1]
    request = decode_request(data, SECRET)
    return isinstance(request, RadiusRequest) and not is_missing_message_authenticator(
        request, client
    )


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def feed(
    data: bytes, require_message_authenticator: bool
) -> tuple[list[bytes], CountingMetrics]:
    """Feed one datagram from a known and one from an unknown source; no error may be logged
    (the listener's last-resort handler logs an escaping exception at ERROR)."""
    errors = ErrorRecords()
    logging.getLogger("mfad.radius").addHandler(errors)
    try:
        sent, metrics = await _feed(data, require_message_authenticator)
    finally:
        logging.getLogger("mfad.radius").removeHandler(errors)
    assert not errors.records, [record.getMessage() for record in errors.records]
    return sent, metrics


async def _feed(
    data: bytes, require_message_authenticator: bool
) -> tuple[list[bytes], CountingMetrics]:
    metrics = CountingMetrics()
    server = RadiusServer(
        RadiusServerSettings(listen=(("127.0.0.1", 0),), reject_delay=0.0),
        ClientTable(loopback_clients(require_message_authenticator=require_message_authenticator)),
        DemoPolicy(),
        metrics=metrics,
    )
    protocol = server.protocol()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.datagram_received(data, ("127.0.0.1", 40000))
    # Unknown sources are dropped whatever they send.
    protocol.datagram_received(data, (str(ipaddress.IPv4Address("192.0.2.9")), 40000))
    while server.in_flight:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    return transport.sent, metrics


@given(datagrams, st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_listener_answers_exactly_the_admissible(data: bytes, require_ma: bool) -> None:
    sent, metrics = asyncio.run(feed(data, require_ma))
    expected = admissible(data, require_ma)
    event("admissible" if expected else "dropped")
    assert len(sent) == (1 if expected else 0)
    assert sum(metrics.received.values()) == 2
    assert metrics.dropped[DropReason.UNKNOWN_CLIENT] == 1
