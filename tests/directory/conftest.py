"""A real slapd per test module (see slapd_peer.py); a silent TCP server for timeouts."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

# The RADIUS peers and daemon fixture (tests/radius) serve the directory sign-in tests too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "radius"))

import pytest

from peer_tools import missing
from slapd_peer import Slapd, available


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if not available():
        pytest.skip(missing("slapd ldap-utils"))
    server = Slapd.start(Path(tmp_path_factory.mktemp("slapd")))
    yield server
    server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


