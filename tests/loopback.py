"""Free loopback ports for peers and daemons whose config must name a port before they start.

The one copy of this helper for every test directory (each imports it as ``loopback``). A
port is free when asked; a test that binds it later can race another process for it, so
servers that can take port 0 and report what they bound should do that instead.
"""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (default) or UDP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)
