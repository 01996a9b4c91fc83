"""Benchmark of gRPC ``Authentication.VerifyCode`` against a real ``mfad serve`` process.

Provisions many users, each with a confirmed TOTP device, directly through the core
(not timed); starts ``mfad serve`` in its own process; then, from this process, sends
only *valid* codes — every call must come back ACCEPTED, so each one runs the whole
hot path: caller check, ``load_subject``, TOTP match and the replay-guarded
``accept_totp`` write with its audit row — keeping ``--concurrency`` calls in
flight over one channel. Each user's codes go up one step per round (the replay
guard refuses a step twice), the way an authenticator app's codes do. Prints the
rate and the latency percentiles seen by the client.

    PYTHONPATH=.:clients python bench/grpc_verify.py [--users 2000] [--rounds 3] [--concurrency 64]
        [--engine sqlite|postgres] [--dsn postgresql://...] [--workdir DIR] [--profile py-spy]

SQLite lives in ``--workdir`` (a fresh temporary directory by default): say which
file system that is when quoting figures (tmpfs makes fsync free).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.config import load_config
from mfad.core import totp
from mfad.core.keyring import Keyring
from mfad.core.model import Role
from mfad.core.service import Mfa
from mfad.store import open_store

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class App:
    """One user's authenticator app: which step it showed last, and the drift the server saw."""

    username: str
    key: bytes
    last_step: int
    drift: int = 0

    def next_code(self, now: float) -> str | None:
        current = int(now // 30)
        step = max(self.last_step + 1, current)
        if step > current + self.drift + 1 or 30 - now % 30 < 1.0:
            return None  # not acceptable yet (or too close to the next step to be sure)
        self.last_step = step
        self.drift = max(-totp.MAX_DRIFT, min(totp.MAX_DRIFT, step - current))
        return totp.hotp(self.key, step)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(workdir: Path, url: str, extra: str = "[portal]\nenabled = false\n") -> tuple[Path, int, int]:
    """The daemon's config on free loopback ports; ``extra`` TOML is appended (by default: no portal)."""
    grpc_port, metrics_port = free_port(), free_port()
    config = workdir / "mfad.toml"
    config.write_text(f"""
[storage]
url = {json.dumps(url)}
[secrets]
key_file = {json.dumps(str(workdir / "secrets.key"))}
[grpc]
listen = ["127.0.0.1:{grpc_port}"]
[metrics]
listen = ["127.0.0.1:{metrics_port}"]
[radius]
listen = ["127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]
[logging]
level = "warning"
{extra}""", encoding="utf-8")
    return config, grpc_port, metrics_port


async def provision(config_path: Path, users: int, schema: str | None,
                    password: str | None = None) -> tuple[list[App], str]:
    """Users with confirmed TOTP devices (and ``password``) and a service token, made through the core."""
    config = load_config(config_path)
    store = await open_store(config.storage, schema=schema)
    await store.migrate()
    mfa = Mfa(settings=config.core, store=store, keyring=Keyring.open(Path(config.secrets.key_file)))
    await mfa.start()
    apps: list[App] = []
    gate = asyncio.Semaphore(16)
    prefix = secrets.token_hex(3)

    async def one(i: int) -> None:
        name = f"bench-{prefix}-{i:05d}"
        async with gate:
            await mfa.users.create(name, password, actor="bench")
            binding = await mfa.devices.begin_totp(name, actor="bench")
            key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))
            step = totp.step_at(mfa.clock.now(), 30)
            await mfa.devices.confirm_totp(name, binding.device.id, totp.hotp(key, step), actor="bench")
            apps.append(App(name, key, step))

    try:
        await asyncio.gather(*(one(i) for i in range(users)))
        _, token = await mfa.callers.create(f"bench-{prefix}", Role.SERVICE, actor="bench")
    finally:
        mfa.close()
        await store.aclose()
    return apps, token


def wait_ready(proc: subprocess.Popen[bytes], grpc_port: int, metrics_port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mfad exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", grpc_port), timeout=0.5):
                pass
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("mfad did not become ready")


async def drive(address: str, token: str, apps: list[App], rounds: int, concurrency: int) -> dict[str, object]:
    metadata = (("authorization", f"Bearer {token}"),)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    skipped = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AuthenticationStub(channel)
        await channel.channel_ready()
        queue: asyncio.Queue[App] = asyncio.Queue()
        for _ in range(rounds):
            for app in apps:
                queue.put_nowait(app)

        async def worker() -> None:
            nonlocal skipped
            while True:
                try:
                    app = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                code = app.next_code(time.time())
                if code is None:
                    skipped += 1
                    continue
                started = time.perf_counter()
                try:
                    reply = await stub.VerifyCode(pb.VerifyCodeRequest(username=app.username, code=code),
                                                  metadata=metadata, timeout=30)
                    key = pb.VerifyOutcome.Name(reply.outcome)
                except grpc.aio.AioRpcError as exc:
                    key = exc.code().name
                latencies.append(time.perf_counter() - started)
                outcomes[key] = outcomes.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "calls": len(latencies), "seconds": elapsed, "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "outcomes": outcomes, "skipped": skipped,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="valid codes per user (one step apart)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workdir", type=Path, help="where the SQLite database and config go (default: a temp dir)")
    parser.add_argument("--profile", metavar="SVG", help="record the server with py-spy into this flame graph")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mfad-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    schema = None
    if args.engine == "sqlite":
        url = f"sqlite:///{workdir / 'mfad.db'}"
    else:
        schema = f"bench_{secrets.token_hex(4)}"
        import asyncpg

        async def create_schema() -> None:
            conn = await asyncpg.connect(args.dsn)
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.close()

        asyncio.run(create_schema())
        url = f"{args.dsn}{'&' if '?' in args.dsn else '?'}search_path={schema}"
    config, grpc_port, metrics_port = write_config(workdir, url)

    t0 = time.perf_counter()
    apps, token = asyncio.run(provision(config, args.users, schema))
    print(f"provisioned {len(apps)} users with TOTP devices in {time.perf_counter() - t0:.1f} s ({workdir})")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "clients"),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config)], env=env)
    profiler = None
    try:
        wait_ready(server, grpc_port, metrics_port)
        if args.profile:
            profiler = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--output", args.profile,
                                         "--rate", "200", "--nonblocking"])
            time.sleep(1.0)
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(drive(f"127.0.0.1:{grpc_port}", token, apps, args.rounds, args.concurrency))
        else:
            result = uvloop.run(drive(f"127.0.0.1:{grpc_port}", token, apps, args.rounds, args.concurrency))
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if schema is not None:
            import asyncpg

            async def drop_schema() -> None:
                conn = await asyncpg.connect(args.dsn)
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                await conn.close()

            asyncio.run(drop_schema())
    print(f"engine {args.engine}: {result['calls']} VerifyCode calls with valid codes, {args.concurrency} in flight, "
          f"{args.users} users x {args.rounds} rounds")
    print(f"  {result['rate']:.0f} calls/s over {result['seconds']:.2f} s; "
          f"latency p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    print(f"  outcomes {result['outcomes']}, skipped {result['skipped']} (code not yet acceptable)")
    accepted = result["outcomes"].get("VERIFY_OUTCOME_ACCEPTED", 0)  # type: ignore[union-attr]
    return 0 if accepted == result["calls"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
