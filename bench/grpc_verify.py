"""Benchmark of gRPC ``Authentication.VerifyCode`` against a real ``mfad serve`` process.

Provisions many users, each with a confirmed TOTP device, directly through the core
(not timed); starts ``mfad serve`` in its own process; then, from this process, sends
only *valid* codes — every call must come back ACCEPTED, so each one runs the whole
hot path: caller check, ``load_subject``, TOTP match and the replay-guarded
``accept_totp`` write with its audit row — keeping ``--concurrency`` calls in
flight over one channel. Each user's codes go up one step per round (the replay
guard refuses a step twice), the way an authenticator app's codes do. Prints the
rate and the latency percentiles seen by the client.

The yardstick: the same client, channel, concurrency and number of calls against a
bare ``grpc.aio`` server (its own process, the same interpreter, uvloop and server
options as mfad's) whose one unary method returns the request's bytes — a message
the size of a ``VerifyCodeRequest``. It runs before and after every mfad run; the
last lines print mfad's rate as a fraction of the mean of the two echo runs around
it (``--no-echo`` skips it).

    PYTHONPATH=.:clients python bench/grpc_verify.py [--users 2000] [--rounds 3] [--concurrency 64]
        [--engine sqlite|postgres] [--dsn postgresql://...] [--workdir DIR] [--profile PREFIX]
        [--trees BEFORE_DIR,AFTER_DIR] [--repeat N] [--no-echo]

``--trees A,B`` serves ``mfad serve`` from each source tree in turn, each against a copy
of the same provisioned store (export a tree with ``git archive <commit> | tar -x -C
DIR``), so a change is measured before and after in one run. ``--profile PREFIX``
records each mfad run with py-spy (``PREFIX.t<tree>r<repeat>.txt``, raw collapsed stacks; ``.svg``
for a flame graph when PREFIX ends in ``.svg``).

SQLite lives in ``--workdir`` (a fresh temporary directory by default): say which
file system that is when quoting figures (tmpfs makes fsync free).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
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
from typing import Any

import grpc
import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api.server import DEFAULT_MAX_RECEIVE_BYTES, GrpcServerSettings
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
    # The binding's QR codes are presentation for the user's phone, not stored state, and
    # cost ≈50 ms of CPU per user: not rendered here.
    totp.qr_png = lambda uri, scale=5: b""
    totp.qr_svg = lambda uri, scale=5: ""
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


#: Seconds of a TOTP step left that a run needs to start in it (a run's codes then stay
#: within the window the replay guard and the drift allow).
STEP_MARGIN = 12.0
#: The bare server's one method: the request's bytes back (no parsing, no work).
ECHO_SERVICE, ECHO_METHOD = "bench.Echo", "Echo"


def echo_server_main(port: int) -> None:
    """A bare grpc.aio server with mfad's server options; runs until killed."""
    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                          ("grpc.max_receive_message_length", DEFAULT_MAX_RECEIVE_BYTES)],
                                 maximum_concurrent_rpcs=GrpcServerSettings().max_concurrent_rpcs)

        async def echo(request: bytes, context: object) -> bytes:
            return request

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            ECHO_SERVICE, {ECHO_METHOD: grpc.unary_unary_rpc_method_handler(echo)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    run_loop(serve())


def api_server_main(port: int, token: str) -> None:
    """mfad's gRPC front end as ``mfad serve`` builds it (GrpcServer, the caller checks, the
    caller cache, Prometheus metrics, the Authentication servicer and its input checks) over
    a core whose ``sign_in`` accepts at once: what the gRPC layer costs alone."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from mfad.api.callers import CachedCallers
    from mfad.api.metrics import PrometheusGrpcMetrics
    from mfad.api.server import GrpcServer
    from mfad.api.servicers import AuthenticationServicer, binding

    class OneCaller:
        async def authenticate(self, presented: str) -> Any:
            return SimpleNamespace(name="bench", role=Role.SERVICE) if presented == token else None

    async def accept(request: object) -> Any:
        return SimpleNamespace(accepted=True)

    async def ready() -> bool:
        return True

    async def serve() -> None:
        mfa: Any = SimpleNamespace(signin=SimpleNamespace(sign_in=accept))
        server = GrpcServer(GrpcServerSettings(listen=(f"127.0.0.1:{port}",)),
                            services=[binding(AuthenticationServicer(mfa), "Authentication")],
                            authenticator=CachedCallers(OneCaller()), readiness=ready,
                            metrics=PrometheusGrpcMetrics(CollectorRegistry()))
        await server.start()
        await server.run()

    run_loop(serve())


def run_loop(coro: Any) -> Any:
    """On uvloop when it is there, as ``mfad serve`` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)



async def drive(address: str, token: str, apps: list[App], rounds: int, concurrency: int,
                echo: bool = False, fixed_code: bool = False) -> dict[str, Any]:
    """``rounds`` calls per app, ``concurrency`` in flight over one channel: VerifyCode with
    the app's next code (or, ``fixed_code``, always the same one), or (``echo``) the same
    request to the bare server's method."""
    metadata = (("authorization", f"Bearer {token}"),)
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    skipped = 0
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        if echo:
            method = channel.unary_unary(f"/{ECHO_SERVICE}/{ECHO_METHOD}",
                                         request_serializer=pb.VerifyCodeRequest.SerializeToString,
                                         response_deserializer=pb.VerifyCodeRequest.FromString)

            async def call(app: App, code: str) -> str:
                reply = await method(pb.VerifyCodeRequest(username=app.username, code=code),
                                     metadata=metadata, timeout=30)
                return "ECHOED" if reply.username == app.username else "WRONG_ECHO"
        else:
            stub = pb_grpc.AuthenticationStub(channel)

            async def call(app: App, code: str) -> str:
                reply = await stub.VerifyCode(pb.VerifyCodeRequest(username=app.username, code=code),
                                              metadata=metadata, timeout=30)
                return str(pb.VerifyOutcome.Name(reply.outcome))

        fixed_code = fixed_code or echo
        if not fixed_code and 30 - time.time() % 30 < STEP_MARGIN:
            await asyncio.sleep(30 - time.time() % 30 + 0.1)  # a run starts early in a step
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
                code = "000000" if fixed_code else app.next_code(time.time())
                while code is None:  # the app shows it in a moment (a run is never skipped short)
                    skipped += 1
                    await asyncio.sleep(0.05)
                    code = app.next_code(time.time())
                started = time.perf_counter()
                try:
                    key = await call(app, code)
                except grpc.aio.AioRpcError as exc:
                    key = exc.code().name
                latencies.append(time.perf_counter() - started)
                outcomes[key] = outcomes.get(key, 0) + 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    return {
        "calls": len(latencies), "seconds": elapsed, "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "outcomes": outcomes, "skipped": skipped, "client_cpu_us": cpu / max(1, len(latencies)) * 1e6,
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_drive(server: subprocess.Popen[bytes], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`drive`, with the CPU the server process used per call."""
    before = process_cpu(server.pid)
    result = dict(run_loop(drive(*args, **kwargs)))
    result["server_cpu_us"] = (process_cpu(server.pid) - before) / max(1, result["calls"]) * 1e6
    return result


def wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"echo server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit("echo server did not listen")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_echo(apps: list[App], token: str, rounds: int, concurrency: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "echo-server", "--port", str(port)])
    try:
        wait_port(server, port)
        return timed_drive(server, f"127.0.0.1:{port}", token, apps, rounds, concurrency, echo=True)
    finally:
        stop(server)


def measure_api(tree: Path, apps: list[App], token: str, rounds: int, concurrency: int) -> dict[str, Any]:
    """VerifyCode against ``tree``'s gRPC layer over an accepting core (:func:`api_server_main`)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "clients")]))
    server = subprocess.Popen([sys.executable, __file__, "api-server", "--port", str(port), "--token", token], env=env)
    try:
        wait_port(server, port)
        return timed_drive(server, f"127.0.0.1:{port}", token, apps, rounds, concurrency, fixed_code=True)
    finally:
        stop(server)


def py_spy() -> str:
    """py-spy from this interpreter's environment (pip installs it there), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def measure_mfad(tree: Path, config: Path, grpc_port: int, metrics_port: int, token: str, apps: list[App],
                 args: argparse.Namespace, profile: str | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "clients"),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config)], env=env, cwd=tree)
    profiler = None
    try:
        wait_ready(server, grpc_port, metrics_port)
        if profile:
            raw = [] if profile.endswith(".svg") else ["--format", "raw"]
            # --native (the C frames too: grpc's core, uvloop, SQLite) must stop the process to sample it.
            raw.append("--native" if os.environ.get("BENCH_PY_SPY_NATIVE") else "--nonblocking")
            profiler = subprocess.Popen([py_spy(), "record", "--pid", str(server.pid), "--output", profile,
                                         "--rate", "200", *raw],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        return timed_drive(server, f"127.0.0.1:{grpc_port}", token, apps, args.rounds, args.concurrency)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)
        stop(server)


def describe(label: str, result: dict[str, Any]) -> str:
    return (f"{label}: {result['calls']} calls, {result['rate']:.0f} calls/s over {result['seconds']:.2f} s; "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; CPU per call: server "
            f"{result['server_cpu_us']:.0f} us, client {result['client_cpu_us']:.0f} us; outcomes {result['outcomes']}"
            + (f", {result['skipped']} waits of 50 ms for a code" if result["skipped"] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    echo_cmd = sub.add_parser("echo-server", help="(internal) the bare grpc.aio server")
    echo_cmd.add_argument("--port", type=int, required=True)
    api_cmd = sub.add_parser("api-server", help="(internal) mfad's gRPC layer over an accepting core")
    api_cmd.add_argument("--port", type=int, required=True)
    api_cmd.add_argument("--token", required=True)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="valid codes per user (one step apart)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workdir", type=Path, help="where the SQLite database and config go (default: a temp dir)")
    parser.add_argument("--profile", metavar="PREFIX", help="record each mfad run with py-spy (PREFIX.t<tree>r<repeat>.txt)")
    parser.add_argument("--trees", type=lambda s: [Path(p).resolve() for p in s.split(",")], default=[ROOT],
                        metavar="DIR,DIR", help="serve mfad from each source tree in turn (default: this tree)")
    parser.add_argument("--api-only", action="store_true",
                        help="measure each tree's gRPC layer over a core that accepts at once, not mfad serve")
    parser.add_argument("--repeat", type=int, default=1, help="measure every tree this many times, in turn")
    parser.add_argument("--no-echo", dest="echo", action="store_false", help="skip the bare grpc.aio server")
    args = parser.parse_args()
    if args.command == "echo-server":
        echo_server_main(args.port)
        return 0
    if args.command == "api-server":
        api_server_main(args.port, args.token)
        return 0
    if len(args.trees) * args.repeat > 1 and args.engine != "sqlite":
        parser.error("--trees and --repeat need --engine sqlite (each run gets a copy of the store's file)")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mfad-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    schemas: list[str] = []
    if args.engine == "sqlite":
        url = f"sqlite:///{workdir / 'mfad.db'}"
        schema = None
    else:
        schema = f"bench_{secrets.token_hex(4)}"
        schemas.append(schema)
        asyncio.run(pg_execute(args.dsn, f'CREATE SCHEMA "{schema}"'))
        url = f"{args.dsn}{'&' if '?' in args.dsn else '?'}search_path={schema}"
    config, grpc_port, metrics_port = write_config(workdir, url)
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)

    t0 = time.perf_counter()
    if args.api_only:  # no store: the users are names, the token any token
        apps, token = [App(f"bench-api-{i:05d}", b"", 0) for i in range(args.users)], secrets.token_urlsafe(32)
    else:
        apps, token = asyncio.run(provision(config, args.users, schema))
        print(f"provisioned {len(apps)} users with TOTP devices in {time.perf_counter() - t0:.1f} s ({workdir})",
              flush=True)
    rates: list[tuple[Path, float, list[float]]] = []
    failed = False
    try:
        echo_rates = []
        if args.echo:
            first = measure_echo(apps, token, args.rounds, args.concurrency)
            print(describe("bare grpc.aio echo", first), flush=True)
            echo_rates.append(first["rate"])
        runs = [(r, t, tree) for r in range(args.repeat) for t, tree in enumerate(args.trees)]
        configs = [config]
        for n in range(1, 0 if args.api_only else len(runs)):  # copies of the provisioned store, made before any run spends codes
            configs.append(workdir / f"mfad-{n}.toml")
            configs[n].write_text(config.read_text().replace(json.dumps(url),
                                                             json.dumps(copy_store(url, workdir, str(n)))))
        for r, t, tree in runs:
            if args.api_only:
                result = measure_api(tree, apps, token, args.rounds, args.concurrency)
                print(describe(f"mfad gRPC layer only, VerifyCode [{tree}]", result), flush=True)
            else:
                profile = None
                if args.profile:
                    profile = args.profile if args.profile.endswith(".svg") and len(runs) == 1 \
                        else f"{args.profile}.t{t}r{r}.{'svg' if args.profile.endswith('.svg') else 'txt'}"
                tree_apps = [dataclasses.replace(app) for app in apps]
                result = measure_mfad(tree, configs[r * len(args.trees) + t], grpc_port, metrics_port, token,
                                      tree_apps, args, profile)
                print(describe(f"mfad VerifyCode [{tree}]", result), flush=True)
            accepted = result["outcomes"].get("VERIFY_OUTCOME_ACCEPTED", 0)
            failed = failed or accepted != result["calls"]
            around = echo_rates[-1:]
            if args.echo:
                after = measure_echo(apps, token, args.rounds, args.concurrency)
                print(describe("bare grpc.aio echo", after), flush=True)
                echo_rates.append(after["rate"])
                around.append(after["rate"])
            rates.append((tree, result["rate"], around))
    finally:
        for name in schemas:
            asyncio.run(pg_execute(args.dsn, f'DROP SCHEMA "{name}" CASCADE'))
    print(f"# engine {args.engine}, {args.concurrency} in flight, {args.users} users x {args.rounds} rounds; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for tree in args.trees:
        ratios = [rate / statistics.mean(around) for t, rate, around in rates if t == tree and around]
        if ratios:
            print(f"{'gRPC layer only' if args.api_only else 'VerifyCode'} / bare echo [{tree}]: " + ", ".join(f"{x:.2f}x" for x in ratios)
                  + (f"; mean {statistics.mean(ratios):.2f}x" if len(ratios) > 1 else ""))
    return 1 if failed else 0


async def pg_execute(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def copy_store(url: str, workdir: Path, tag: str) -> str:
    """A copy of the provisioned SQLite store (its users' codes are fresh again there)."""
    import sqlite3

    target = workdir / f"mfad-{tag}.db"
    with sqlite3.connect(url[len("sqlite:///"):]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


if __name__ == "__main__":
    raise SystemExit(main())
