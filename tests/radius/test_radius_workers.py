"""``mfad serve`` as a real subprocess with ``radius.workers = 2``: two processes share the
RADIUS port (SO_REUSEPORT) on one store. Fifty NAS sockets sending the same valid code
at once get exactly one Access-Accept; each worker serves metrics on its own port
(configured port + worker index) that ``promtool check metrics`` accepts; SIGTERM stops
them all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from radius_peers import SECRET, check_reply, pyrad_request

from peer_tools import need_tool
from mfad.config import Config, PasswordSettings
from mfad.core import totp
from mfad.core.clock import SystemClock
from mfad.core.keyring import Keyring
from mfad.core.service import Mfa

REPO = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.slow


def free_ports(count: int, kind: int) -> int:
    """A port p with p .. p+count-1 free (for the workers' consecutive metrics ports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, kind)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError("no run of free ports")


def storage_url(location: Any) -> str:
    if location.engine == "sqlite":
        return str(location.url)
    parts = urlsplit(location.url)  # asyncpg passes unknown DSN parameters as server settings
    return urlunsplit(parts._replace(query=urlencode({"search_path": location.schema})))


@contextlib.contextmanager
def mfad_serve(tmp_path: Path, store_location: Any, key_file: Path) -> Iterator[dict[str, Any]]:
    radius_port = free_ports(1, socket.SOCK_DGRAM)
    metrics_port = free_ports(2, socket.SOCK_STREAM)
    config = tmp_path / "mfad.toml"
    config.write_text(f"""
[storage]
url = "{storage_url(store_location)}"
[secrets]
key_file = "{key_file}"
[passwords]
time_cost = 1
memory_kib = 64
parallelism = 1
[radius]
listen = ["127.0.0.1:{radius_port}"]
workers = 2
reject_delay_seconds = 0.0
[[radius.clients]]
name = "lo"
address = "127.0.0.1"
secret = "{SECRET.decode()}"
mode = "otp_only"
[grpc]
listen = ["127.0.0.1:0"]
[metrics]
listen = ["127.0.0.1:{metrics_port}"]
[portal]
listen = ["127.0.0.1:0"]
token_file = "{tmp_path / 'portal.token'}"
""")
    process = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert process.stderr is not None
        while not any("all 2 workers ready" in line for line in lines):
            line = process.stderr.readline()
            if not line and process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("mfad did not start:\n" + "".join(lines))
            lines.append(line)
        yield {"process": process, "radius": radius_port, "metrics": metrics_port, "log": lines}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
                raise
            finally:
                if process.stderr is not None:
                    process.stderr.close()
        elif process.stderr is not None:
            process.stderr.close()


async def enrol_live(store: Any, key_file: Path) -> bytes:
    """alice with a TOTP device confirmed at the current step, on the real clock; her key."""
    config = Config(passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1))
    live = Mfa(settings=config.core, store=store, keyring=Keyring.open(key_file), clock=SystemClock())
    await live.start()
    try:
        await live.users.create("alice", None)
        binding = await live.devices.begin_totp("alice")
        key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))
        await live.devices.confirm_totp("alice", binding.device.id,
                                        totp.hotp(key, totp.step_at(datetime.now(UTC), 30)))
    finally:
        live.close()
    return key


async def test_two_workers_accept_one_code_once(tmp_path: Path, store_location: Any, store: Any) -> None:
    key_file = tmp_path / "daemon.key"
    key = await enrol_live(store, key_file)
    with mfad_serve(tmp_path, store_location, key_file) as daemon:
        # The next step's code: valid (±1 window) and not used by the confirmation.
        code = totp.hotp(key, totp.step_at(datetime.now(UTC), 30) + 1)
        loop = asyncio.get_running_loop()
        sockets, requests = [], []
        try:
            for _ in range(50):  # fifty NAS sockets: fifty different requests, not retransmissions
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect(("127.0.0.1", daemon["radius"]))
                sockets.append(sock)
                requests.append(pyrad_request(user="alice", password=code, secret=SECRET))
            for sock, request in zip(sockets, requests):
                sock.send(request.RequestPacket())

            async def answer(sock: socket.socket) -> bytes:
                async with asyncio.timeout(10):
                    return await loop.sock_recv(sock, 4096)

            replies = await asyncio.gather(*(answer(sock) for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()
        codes = [check_reply(request, reply).code for request, reply in zip(requests, replies)]
        assert codes.count(2) == 1, codes  # exactly one Access-Accept
        assert codes.count(3) == 49

        # Both workers served (SO_REUSEPORT spreads the sockets), each with its own metrics port.
        texts = [_metrics(daemon["metrics"] + worker) for worker in (0, 1)]
        served = [_counter(text, 'mfad_radius_packets_received_total{code="Access-Request"}') for text in texts]
        assert sum(served) == 50 and all(n > 0 for n in served), served
        promtool = need_tool("promtool", "prometheus")
        for text in texts:
            check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr

        process = daemon["process"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _counter(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_dead_worker_stops_the_service(tmp_path: Path) -> None:
    """systemd's Restart=on-failure then restarts the whole service, rather than it running short.
    (The supervisor does not depend on the engine: a SQLite file the daemon creates.)"""
    location = SimpleNamespace(engine="sqlite", url=f"sqlite:///{tmp_path / 'db' / 'mfad.db'}")
    with mfad_serve(tmp_path, location, tmp_path / "daemon.key") as daemon:
        pids = {int(line.rsplit("pid ", 1)[1].rstrip(")\n")) for line in daemon["log"]
                if "serving (pid" in line}
        assert len(pids) == 2
        victim = max(pids)
        os.kill(victim, signal.SIGKILL)
        process = daemon["process"]
        assert process.wait(40) == 1
        for pid in pids - {victim}:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
