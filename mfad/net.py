"""Network addresses as the config writes them: one parser for every listener.

``"host:port"``, ``"[v6]:port"`` (DESIGN §3). Each caller adds its own rule on top
(RADIUS listens on IP literals only; gRPC without TLS on loopback only).
"""

from __future__ import annotations

import ipaddress


def parse_address(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port). Raises ValueError with a reason."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("IPv6 addresses are written [addr]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            if default_port is None:
                raise ValueError("must be host:port")
            host, port_text = text, str(default_port)
        if ":" in host:
            raise ValueError("IPv6 addresses are written [addr]:port")
    if not host:
        raise ValueError("host is empty")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is certainly this machine; a host name other than localhost could
    resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
