"""Peers for the RADIUS tests: a policy of the tests' own, a raw UDP NAS, radclient.

Requests for the raw NAS are built with pyrad, and replies are checked with pyrad and
with hashlib directly, so mfad's codec is never checked against itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import re
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyrad.packet import AccessRequest, AuthPacket, StatusServer  # type: ignore[import-untyped]

from peer_tools import find_tool
from mfad.radius import (
    ClientMode,
    CountingMetrics,
    Decision,
    NoReply,
    RadiusClient,
    RadiusRequest,
    RadiusServer,
)
from mfad.radius.attributes import DICTIONARY

SECRET = b"test-shared-secret-0123"

StartServer = Callable[..., Awaitable[RadiusServer]]
"""The ``start_server`` fixture: ``await start_server(handler, clients=..., **settings)``."""
CODE = "123456"


class DemoPolicy:
    """alice/pw -> challenge; the State back with 123456 -> accept; bob/pw -> accept."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        #: Set once a request is being decided: a test waits on it instead of sleeping.
        self.called = asyncio.Event()
        self.seen: list[RadiusRequest] = []
        self._open: dict[bytes, str] = {}

    async def __call__(self, request: RadiusRequest, client: RadiusClient) -> Decision | NoReply:
        self.calls += 1
        self.called.set()
        self.seen.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.state is not None:
            user = self._open.pop(request.state, None)
            if user is not None and user == request.user_name and request.password == CODE:
                return Decision.accept(f"Welcome, {user}")
            return Decision.reject("Access denied")
        if request.user_name == "alice" and request.password == "pw":
            state = os.urandom(16)
            self._open[state] = "alice"
            return Decision.challenge("Enter the code from your authenticator app", state)
        if request.user_name == "bob" and request.password == "pw":
            return Decision.accept("Welcome, bob")
        return Decision.reject("Access denied")


def pyrad_request(
    *,
    user: str = "bob",
    password: str | bytes | None = "pw",
    secret: bytes = SECRET,
    identifier: int = 7,
    message_authenticator: bool = True,
    proxy_states: Sequence[bytes] = (),
    state: bytes | None = None,
    station: str | None = None,
    code: int = AccessRequest,
    authenticator: bytes | None = None,
) -> AuthPacket:
    """An Access-Request (or Status-Server) built by pyrad, independent of mfad's codec."""
    packet = AuthPacket(
        code=code,
        id=identifier,
        secret=secret,
        authenticator=authenticator if authenticator is not None else os.urandom(16),
        dict=DICTIONARY,
    )
    if code == AccessRequest:
        packet["User-Name"] = user
        if password is not None:
            packet["User-Password"] = packet.PwCrypt(password)
        packet["NAS-Identifier"] = "test-nas"
    if state is not None:
        packet["State"] = state
    if station is not None:
        packet["Calling-Station-Id"] = station
    for value in proxy_states:
        packet.AddAttribute("Proxy-State", value)
    if message_authenticator:
        packet.add_message_authenticator()
    return packet


@dataclass
class CheckedReply:
    code: int
    packet: AuthPacket
    raw: bytes

    def values(self, name: str) -> list[object]:
        return list(self.packet[name]) if name in self.packet else []

    @property
    def attribute_numbers(self) -> list[int]:
        numbers, position = [], 20
        while position < len(self.raw):
            numbers.append(self.raw[position])
            position += self.raw[position + 1]
        return numbers


def check_reply(request: AuthPacket, raw: bytes) -> CheckedReply:
    """Assert the BlastRADIUS-era shape of a reply and decode it with pyrad."""
    secret: bytes = request.secret
    assert int.from_bytes(raw[2:4], "big") == len(raw)
    assert raw[1] == request.id
    assert raw[20] == 80 and raw[21] == 18, "Message-Authenticator must be the first attribute"
    expected_auth = hashlib.md5(raw[:4] + request.authenticator + raw[20:] + secret).digest()
    assert raw[4:20] == expected_auth, "bad Response Authenticator"
    signed = raw[:4] + request.authenticator + raw[20:22] + bytes(16) + raw[38:]
    assert raw[22:38] == hmac.new(secret, signed, hashlib.md5).digest(), "bad Message-Authenticator"
    reply = AuthPacket(packet=raw, dict=DICTIONARY, secret=secret)
    assert request.VerifyReply(reply, raw, enforce_ma=True)
    return CheckedReply(code=raw[0], packet=reply, raw=raw)


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.queue.put_nowait(data)


@dataclass
class UdpNas:
    """A NAS of the tests' own: one UDP socket, raw datagrams both ways."""

    transport: asyncio.DatagramTransport
    collector: _Collector
    sent: list[bytes] = field(default_factory=list)

    @classmethod
    async def connect(cls, host: str, port: int, *, local_port: int = 0, local_host: str | None = None) -> UdpNas:
        """A socket sending to ``host:port`` from ``local_host`` (default: ``host``; another
        loopback address such as 127.0.0.2 is another NAS)."""
        loop = asyncio.get_running_loop()
        transport, collector = await loop.create_datagram_endpoint(
            _Collector, local_addr=(local_host or host, local_port), remote_addr=(host, port)
        )
        return cls(transport=transport, collector=collector)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.transport.sendto(data)

    async def receive(self, timeout: float = 2.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.collector.queue.get()

    async def silence(self, wait: float = 0.3) -> None:
        """Assert that nothing arrives within ``wait`` seconds."""
        try:
            async with asyncio.timeout(wait):
                data = await self.collector.queue.get()
        except TimeoutError:
            return
        raise AssertionError(f"expected no reply, got code {data[0]}")

    def close(self) -> None:
        self.transport.close()

    async def aclose(self) -> None:
        """Close and wait until the socket is really gone (its port free again)."""
        self.transport.close()
        async with asyncio.timeout(2):
            await self.collector.lost


@dataclass
class RadclientResult:
    reply: str | None
    attributes: list[tuple[str, str]]
    output: str

    def first(self, name: str) -> str | None:
        return next((value for key, value in self.attributes if key == name), None)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.attributes if key == name]


RADCLIENT = find_tool("radclient")
_RECEIVED = re.compile(r"^Received (\S+) Id \d+")
_ATTRIBUTE = re.compile(r"^\s+([A-Za-z0-9-]+) = (.*)$")


async def radclient(
    host: str, port: int, lines: Sequence[str], *, secret: bytes = SECRET, command: str = "auth"
) -> RadclientResult:
    """Send one request with FreeRADIUS's radclient (no retries) and parse what it printed."""
    assert RADCLIENT is not None, "radclient (freeradius-utils) is needed"
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    process = await asyncio.create_subprocess_exec(
        RADCLIENT,
        "-x",
        "-r",
        "1",
        "-t",
        "1",
        server,
        command,
        secret.decode(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(10):
        out, _ = await process.communicate(("\n".join(lines) + "\n").encode())
    text = out.decode(errors="replace")
    reply: str | None = None
    attributes: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = _RECEIVED.match(line)
        if match:
            reply = match.group(1)
            continue
        attribute = _ATTRIBUTE.match(line)
        if attribute and reply is not None:
            attributes.append((attribute.group(1), attribute.group(2).strip('"')))
    return RadclientResult(reply=reply, attributes=attributes, output=text)


def loopback_clients(**overrides: Any) -> list[RadiusClient]:
    """The IPv4 and IPv6 loopback NAS clients with the test secret (overrides apply to both)."""
    values: dict[str, Any] = {"secret": SECRET, "mode": ClientMode.CHALLENGE} | overrides
    return [
        RadiusClient(name="lo4", network=ipaddress.ip_network("127.0.0.1/32"), **values),
        RadiusClient(name="lo6", network=ipaddress.ip_network("::1/128"), **values),
    ]


def counters(server: RadiusServer) -> CountingMetrics:
    metrics = server.metrics
    assert isinstance(metrics, CountingMetrics)
    return metrics


__all__ = [
    "CODE",
    "SECRET",
    "StartServer",
    "AccessRequest",
    "CheckedReply",
    "DemoPolicy",
    "RadclientResult",
    "StatusServer",
    "UdpNas",
    "check_reply",
    "counters",
    "loopback_clients",
    "pyrad_request",
    "radclient",
]
