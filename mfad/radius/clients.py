"""The NAS clients mfad answers, matched by source address with longest-prefix match.

Guarantees: every client has a name, an IPv4 or IPv6 network (a host is a /32 or
/128), a shared secret of at least 16 octets and a mode; two clients never share a
name or a network; a source address is matched to the client with the most specific
network containing it (as FreeRADIUS does for overlapping networks), IPv4-mapped
IPv6 sources are matched as IPv4, and an address no network contains is unknown.
Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from mfad.radius.errors import RadiusConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_SECRET_LENGTH: Final = 16
"""Shorter shared secrets are brute-forced offline from one captured packet."""

RADSEC_SECRET: Final = b"radsec"
"""RFC 6614 §2.3: the RADIUS shared secret over TLS, which does the protecting."""

_MEMO_LIMIT: Final = 4096
"""Source addresses whose lookup is remembered; bounded so spoofed sources cannot grow it."""


class ClientMode(StrEnum):
    """How a NAS presents the second factor in an Access-Request."""

    CHALLENGE = "challenge"
    """Password first, then the code in answer to an Access-Challenge."""
    APPEND = "append"
    """User-Password is the password immediately followed by the code."""
    OTP_ONLY = "otp_only"
    """The NAS checked the password itself; User-Password is the code."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusClient:
    """One NAS (or a network of them) sharing a secret with mfad.

    ``limit_proxy_state`` matters only when ``require_message_authenticator`` is off:
    then an Access-Request that carries Proxy-State but no Message-Authenticator is
    dropped (FreeRADIUS ``limit_proxy_state = yes``), which blocks the BlastRADIUS
    forgery for NASes that cannot send Message-Authenticator. Turning both off leaves
    that client open to forged Access-Accepts; the server logs it at start.
    """

    name: str
    network: Network
    secret: bytes = field(repr=False)
    mode: ClientMode = ClientMode.CHALLENGE
    require_message_authenticator: bool = True
    #: "auto": not required until this NAS (name, source address) has sent one; then always
    #: (``mfad.radius.signed``). Meaningful only while ``require_message_authenticator`` is off.
    learn_message_authenticator: bool = False
    trust_calling_station_id: bool = False
    limit_proxy_state: bool = True
    #: Requests per second this client may send (None: the server-wide ``client_rate``).
    rate_per_second: float | None = None
    #: A RadSec client (RFC 6614): TLS carries it, and its secret is the fixed ``radsec``.
    over_tls: bool = False
    #: Hold mode (append/otp_only, docs/approval.md): seconds a request that typed ``approve``
    #: may wait unanswered for its approval; 0 is off.
    approval_hold_seconds: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise RadiusConfigError("a RADIUS client needs a name")
        if not isinstance(self.network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise RadiusConfigError(f"RADIUS client {self.name}: network must be an IP network")
        if self.over_tls:
            if self.secret != RADSEC_SECRET:
                raise RadiusConfigError(f"RADIUS client {self.name}: over TLS the secret is 'radsec' (RFC 6614)")
        elif not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_LENGTH:
            raise RadiusConfigError(
                f"RADIUS client {self.name}: secret must be at least {MIN_SECRET_LENGTH} octets"
            )
        try:
            object.__setattr__(self, "mode", ClientMode(self.mode))
        except ValueError:
            raise RadiusConfigError(
                f"RADIUS client {self.name}: mode must be one of "
                + ", ".join(mode.value for mode in ClientMode)
            ) from None


def parse_network(text: str) -> Network:
    """An IP address or CIDR network as configured ("192.0.2.7", "2001:db8::/64").

    Host bits set under the mask ("10.0.0.1/8") are refused: they are a typo more
    often than an intent.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise RadiusConfigError(f"not an IP address or network: {text!r} ({exc})") from None


class ClientTable:
    """Clients indexed for longest-prefix match by source address, and by name."""

    def __init__(self, clients: Iterable[RadiusClient]) -> None:
        self._clients: tuple[RadiusClient, ...] = tuple(clients)
        self._by_name: dict[str, RadiusClient] = {}
        # Per address family: (prefix length, mask, {network address: client}), longest first.
        self._v4: list[tuple[int, int, dict[int, RadiusClient]]] = []
        self._v6: list[tuple[int, int, dict[int, RadiusClient]]] = []
        self._memo: dict[str, RadiusClient | None] = {}
        tables: dict[tuple[int, int], dict[int, RadiusClient]] = {}
        for client in self._clients:
            if client.name in self._by_name:
                raise RadiusConfigError(f"RADIUS client name {client.name!r} is used twice")
            self._by_name[client.name] = client
            network = client.network
            table = tables.setdefault((network.version, network.prefixlen), {})
            key = int(network.network_address)
            if key in table:
                raise RadiusConfigError(
                    f"RADIUS clients {table[key].name!r} and {client.name!r} have the same network"
                )
            table[key] = client
        for (version, prefixlen), table in sorted(tables.items(), key=lambda item: -item[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << prefixlen) - 1) << (bits - prefixlen)
            (self._v4 if version == 4 else self._v6).append((prefixlen, mask, table))

    def replace(self, other: ClientTable) -> None:
        """Take ``other``'s clients (a reload): the servers sharing this table see them from
        their next packet on; a request being decided keeps the client it was matched to."""
        self._clients, self._by_name, self._v4, self._v6 = other._clients, other._by_name, other._v4, other._v6
        self._memo = {}

    def __iter__(self) -> Iterator[RadiusClient]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def by_name(self, name: str) -> RadiusClient | None:
        return self._by_name.get(name)

    def lookup(self, host: str) -> RadiusClient | None:
        """The client for a source address string as the socket reports it, or None."""
        try:
            return self._memo[host]
        except KeyError:
            pass
        client = self._match(host)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[host] = client
        return client

    def _match(self, host: str) -> RadiusClient | None:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        value = int(address)
        for _, mask, table in self._v4 if address.version == 4 else self._v6:
            client = table.get(value & mask)
            if client is not None:
                return client
        return None
