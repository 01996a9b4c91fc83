"""Helpers for the end-to-end tests: a real ``mfad serve`` process, ``mfactl`` runs, an
authenticator app on the real clock, a TCP proxy in front of PostgreSQL, test certificates.

Nothing here fakes mfad: the daemon is the installed entry point in a subprocess,
``mfactl`` the console script (or ``python -m mfad_client`` when it is not
installed), and every answer travels over loopback TCP.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loopback import free_port, free_udp_port  # noqa: F401  (also for this module's importers)

from mfad.core import totp

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = REPO_ROOT / "clients"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose Python imports this checkout's mfad and mfad_client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFAD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), str(CLIENTS), os.environ.get("PYTHONPATH", ""))
                                        if p)
    env.update(extra or {})
    return env


async def health(address: str, credentials: grpc.ChannelCredentials | None = None, service: str = "") -> int:
    """The standard gRPC health status (needs no caller credentials)."""
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                 timeout=5)
    return int(reply.status)


def mfactl_argv() -> list[str]:
    """The installed console script beside this Python, else the module."""
    script = Path(sys.executable).parent / "mfactl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mfad_client"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"


async def run(argv: Sequence[str], *, env: Mapping[str, str], stdin: str | None = None,
              timeout: float = 30.0) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(env))
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(list(argv), proc.returncode, out.decode(), err.decode())


@dataclass
class Daemon:
    """``mfad serve`` in a subprocess with a config of its own; stopped with SIGTERM."""

    workdir: Path
    sections: dict[str, dict[str, Any]]
    grpc_port: int
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    #: Extra environment for the daemon (``DaemonClock.env()``).
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path = field(init=False)
    _terminated: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.config_path = self.workdir / "mfad.toml"
        self.log_path = self.workdir / "mfad.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def write_config(self) -> None:
        self.config_path.write_text(toml(self.sections), encoding="utf-8")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    async def start(self) -> None:
        self.write_config()
        self._terminated = False
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(self.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, env=child_env(self.env),
                                     cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mfad exited with {self.proc.returncode} at start:\n{self.log()}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"mfad not ready after {START_TIMEOUT} s:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.5):
                pass
            return self.http("/readyz")[0] == 200
        except OSError:
            return False

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def terminate(self) -> None:
        """SIGTERM, once: a second one would force the daemon out without its shutdown."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self) -> int:
        """SIGTERM and wait; the exit code (the tests expect 0)."""
        assert self.proc is not None
        self.terminate()
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), STOP_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"mfad did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")  # Debian package faketime


class DaemonClock:
    """The wall clock of a daemon process, set by the test: libfaketime (preloaded into
    the daemon only) reads an offset from a file on every call, so ``set(when)`` moves the
    daemon's time at once, and it runs on from there at the real pace. Only the wall clock
    moves: the monotonic clock (event-loop timers, timeouts) stays real."""

    def __init__(self, path: Path) -> None:
        assert LIBFAKETIME.exists(), "libfaketime is needed (Debian package faketime; scripts/test installs it)"
        self.path = path
        self.path.write_text("+0\n")

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set(self, when: dt.datetime) -> None:
        self.path.write_text(f"{when.timestamp() - time.time():+.3f}\n")


class AuthenticatorApp:
    """What a phone's authenticator app does, on the real clock, mirroring the server's window
    and drift so every code it hands out is one the server accepts once."""

    def __init__(self, secret_base32: str, *, period: int = 30, digits: int = 6, window: int = 1) -> None:
        self.key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
        self.secret_base32 = secret_base32
        self.period = period
        self.digits = digits
        self.window = window
        self.last_step = -1
        self.drift = 0

    def code_at(self, step: int) -> str:
        return totp.hotp(self.key, step, self.digits)

    async def next_code(self) -> str:
        """A fresh code: the next step the server will take, waiting for the clock when needed."""
        while True:
            now = time.time()
            current = int(now // self.period)
            left = self.period - now % self.period
            step = max(self.last_step + 1, current)
            if left > 2.0 and step <= current + self.drift + self.window:
                self.last_step = step
                self.drift = max(-totp.MAX_DRIFT, min(totp.MAX_DRIFT, step - current))
                return self.code_at(step)
            await asyncio.sleep(left + 0.05)  # too close to the next step, or out of the window

    @property
    def last_code(self) -> str:
        return self.code_at(self.last_step)

    def wrong_codes(self) -> list[str]:
        """Distinct codes matching no step within ±10 periods of now."""
        current = int(time.time() // self.period)
        near = {self.code_at(s) for s in range(current - 10, current + 11)}
        return [c for c in (f"{n:06d}" for n in range(1000)) if c not in near]


