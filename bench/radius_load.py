"""RADIUS load benchmark: mfad ``otp_only`` with valid codes against FreeRADIUS PAP.

What it does, all on this machine and on loopback:

1. Sets up a store with ``--users`` users (default 20,000), each with a confirmed TOTP
   device, through the core (``Mfa.users.create``, ``devices.begin_totp`` and
   ``confirm_totp``; only the QR-code rendering of the binding is skipped), on SQLite
   and on PostgreSQL (``$MFAD_TEST_POSTGRES_DSN``, a fresh database). Copies of the
   set-up store serve the 1- and 2-worker runs, and every code sent is one the replay
   guard has not seen: one request per user and step.
2. Starts FreeRADIUS answering PAP from a users file with the same user names, on
   another port, from a config directory of its own, in three modes: ``-X`` (full
   debug output, one thread), ``-f`` (its thread pool) and ``-s`` (one thread, no
   debug), and measures each with ``radclient`` (a 50-request file repeated with
   ``-c``, ``-p 64``); ``-f`` also with this script's sender.
3. Starts ``mfad serve --workers N`` (uvloop; an ``otp_only`` client; no reject delay;
   the per-client rate limit lifted; defaults otherwise) and, in a separate process,
   this script's async sender: one Access-Request with Message-Authenticator per user
   with the user's current code, ``--in-flight`` outstanding (closed loop): the
   maximum rate, with the CPU mfad used per accept; then the next step's codes, open
   loop at half that rate: the latency there. Replies are checked (code, Response
   Authenticator); anything but an Access-Accept is reported.

Prints requests/s, p50/p99 latency and the ratio mfad/FreeRADIUS for each mode. Every
Access-Accept that mfad sends follows the commit of its replay guard and audit row
(group commit on SQLite, a transaction per request on PostgreSQL). Before each
measurement it waits (up to 5 minutes) for the machine to be idle, and says so when
it was not: the machine is shared, trust the ratios of one run more than the
absolute figures.

    PYTHONPATH=. python bench/radius_load.py [--users 20000] [--engines sqlite,postgres]
        [--workers 1,2] [--in-flight 64] [--freeradius=-X,-f,-s] [--keep DIR] [--py-spy PREFIX]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import functools
import gc
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mfad.core import totp  # noqa: E402
from mfad.radius.attributes import Attr  # noqa: E402
from mfad.radius.codec import RadiusCode, encode_request, hide_password  # noqa: E402

SECRET = b"bench-shared-secret-0123456789"
PERIOD = 30
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- the sender (runs in its own process) ------------------------------------------------
@dataclass
class Job:
    user: str
    password: bytes


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, sender: Sender, slot: int) -> None:
        self.sender = sender
        self.slot = slot
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sender.received(self.slot, data)


class Sender:
    """Up to 256 requests in flight per socket; replies matched by (socket, identifier)."""

    def __init__(self, host: str, port: int, jobs: list[Job], in_flight: int, rate: float | None,
                 timeout: float = 3.0, source: str | None = None) -> None:
        self.host, self.port = host, port
        self.source = source  # the address requests leave from (a NAS's), else the system's choice
        self.jobs = jobs
        self.in_flight = in_flight
        self.rate = rate
        self.timeout = timeout
        self.next_job = 0
        self.pending: dict[tuple[int, int], tuple[float, bytes]] = {}
        #: Identifiers free to send with, the longest free first: a server still finishing
        #: a request (FreeRADIUS logs "conflicting packet") does not see its identifier again.
        self.free: collections.deque[tuple[int, int]] = collections.deque()
        self.sockets: list[_Receiver] = []
        self.latencies: list[float] = []
        self.codes: dict[int, int] = {}
        self.bad_replies = 0
        self.timeouts = 0
        self.done = asyncio.Event()
        self.slot_free = asyncio.Event()
        #: (perf_counter at send, latency) per reply, when asked for (--trace).
        self.trace: list[tuple[float, float]] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        count = max(1, -(-self.in_flight // 256))
        for slot in range(count):
            _, receiver = await loop.create_datagram_endpoint(
                functools.partial(_Receiver, self, slot), remote_addr=(self.host, self.port),
                local_addr=None if self.source is None else (self.source, 0))
            sock = receiver.transport.get_extra_info("socket")  # type: ignore[union-attr]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sockets.append(receiver)
            self.free.extend((slot, ident) for ident in range(256))

    def send_one(self) -> bool:
        if self.next_job >= len(self.jobs) or not self.free:
            return False
        job = self.jobs[self.next_job]
        self.next_job += 1
        slot, ident = self.free.popleft()
        authenticator = os.urandom(16)
        packet = encode_request(RadiusCode.ACCESS_REQUEST, ident, authenticator, SECRET, [
            (Attr.USER_NAME, job.user.encode()),
            (Attr.USER_PASSWORD, hide_password(job.password, SECRET, authenticator)),
            (Attr.NAS_IDENTIFIER, b"bench"),
        ])
        self.pending[(slot, ident)] = (time.perf_counter(), authenticator)
        transport = self.sockets[slot].transport
        assert transport is not None
        transport.sendto(packet)
        return True

    def received(self, slot: int, data: bytes) -> None:
        if len(data) < 20:
            self.bad_replies += 1
            return
        entry = self.pending.pop((slot, data[1]), None)
        if entry is None:
            return  # a late reply to a request already timed out
        sent, authenticator = entry
        self.latencies.append(time.perf_counter() - sent)
        if self.trace is not None:
            self.trace.append((sent, self.latencies[-1]))
        expected = hashlib.md5(data[:4] + authenticator + data[20:] + SECRET).digest()
        if expected != data[4:20]:
            self.bad_replies += 1
        self.codes[data[0]] = self.codes.get(data[0], 0) + 1
        self.free.append((slot, data[1]))
        if self.rate is None:
            self.send_one()
        self.slot_free.set()
        if self.next_job >= len(self.jobs) and not self.pending:
            self.done.set()

    async def expire(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for key, (sent, _) in list(self.pending.items()):
                if now - sent > self.timeout:
                    del self.pending[key]
                    self.timeouts += 1
                    self.free.append(key)
                    if self.rate is None:
                        self.send_one()
            if self.next_job >= len(self.jobs) and not self.pending:
                self.done.set()

    async def run(self) -> dict[str, Any]:
        await self.open()
        started = time.perf_counter()
        expiry = asyncio.create_task(self.expire())
        if self.rate is None:
            for _ in range(self.in_flight):
                self.send_one()
        else:
            # Open loop: requests leave on a fixed schedule, whatever the replies do.
            interval = 1.0 / self.rate
            due = started
            while self.next_job < len(self.jobs):
                now = time.perf_counter()
                while due <= now and self.next_job < len(self.jobs):
                    if not self.send_one():
                        self.slot_free.clear()
                        await self.slot_free.wait()
                        break
                    due += interval
                await asyncio.sleep(max(0.0, min(due - time.perf_counter(), 0.001)))
        await self.done.wait()
        elapsed = time.perf_counter() - started
        expiry.cancel()
        lat = sorted(self.latencies)
        return {
            "sent": self.next_job, "elapsed": elapsed, "rate": len(lat) / elapsed if elapsed else 0.0,
            "accepts": self.codes.get(2, 0), "rejects": self.codes.get(3, 0),
            "others": sum(v for k, v in self.codes.items() if k not in (2, 3)),
            "timeouts": self.timeouts, "bad_replies": self.bad_replies,
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        }


def send_main(args: argparse.Namespace) -> int:
    spec = json.loads(Path(args.jobs).read_text())
    jobs = [Job(user, password.encode()) for user, password in spec]
    host, _, port = args.target.rpartition(":")
    import uvloop

    # The load generator's own pauses must not show up as the server's latency.
    gc.freeze()
    gc.disable()
    sender = Sender(host, int(port), jobs, args.in_flight, args.rate, args.timeout)
    if args.trace:
        sender.trace = []
    result = uvloop.run(sender.run())
    if args.trace and sender.trace is not None:
        # Wall-clock times, to line the slow requests up with the server's log.
        offset = time.time() - time.perf_counter()
        Path(args.trace).write_text("".join(f"{sent + offset:.6f} {lat * 1000:.3f}\n" for sent, lat in sender.trace))
    print(json.dumps(result))
    return 0


# --- set-up --------------------------------------------------------------------------------
#: The ``[radius]`` settings of these runs after ``listen`` and ``workers``: no reject delay,
#: the client rate lifted, one ``otp_only`` client.
BENCH_RADIUS = f"""reject_delay_seconds = 0.0
client_rate_per_second = 1000000.0
max_in_flight = 1024
[[radius.clients]]
name = "bench"
address = "127.0.0.1"
secret = "{SECRET.decode()}"
mode = "otp_only"
"""


def config_text(store_url: str, key_file: Path, port: int, metrics_port: int, workers: int,
                log_level: str = "info", radius: str = BENCH_RADIUS) -> str:
    """mfad's config for a run; ``radius``: the ``[radius]`` lines after ``listen`` and
    ``workers`` (settings, then the ``[[radius.clients]]``)."""
    return f"""
[storage]
url = "{store_url}"
pool_size = 20
[secrets]
key_file = "{key_file}"
[passwords]
time_cost = 1
memory_kib = 64
parallelism = 1
[radius]
listen = ["127.0.0.1:{port}"]
workers = {workers}
{radius}[grpc]
listen = ["127.0.0.1:0"]
[metrics]
listen = ["127.0.0.1:{metrics_port}"]
[portal]
enabled = false
[logging]
level = "{log_level}"
"""


async def create_users(store_url: str, key_file: Path, count: int, schema: str | None = None) -> dict[str, str]:
    """``count`` users with confirmed TOTP devices, through the core. Returns name → base32 key.

    The devices are confirmed with the previous step's code, so the current and the
    next step's codes are fresh for the runs."""
    from mfad.config import Config, PasswordSettings, StorageSettings
    from mfad.core.clock import FixedClock
    from mfad.core.keyring import Keyring
    from mfad.core.service import Mfa
    from mfad.store import open_store

    # The binding's QR code (PNG and SVG, ≈50 ms of CPU per user) is presentation for the
    # user's phone, not stored state: skip rendering it, or 20,000 users take 17 minutes.
    totp.qr_png = lambda uri, scale=5: b""
    totp.qr_svg = lambda uri, scale=5: ""
    # A long store timeout: on a busy shared machine 200 concurrent set-up tasks can wait
    # for a pooled connection past the daemon's default of a few seconds.
    storage = StorageSettings(url=store_url, pool_size=20, timeout_seconds=60.0)
    config = Config(storage=storage, passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1))
    store = await open_store(storage, schema=schema)
    await store.migrate()
    clock = FixedClock(datetime.now(UTC) - timedelta(seconds=PERIOD))
    mfa = Mfa(settings=config.core, store=store, keyring=Keyring.open(key_file), clock=clock)
    await mfa.start()
    keys: dict[str, str] = {}

    async def one(name: str) -> None:
        await mfa.users.create(name, None)
        binding = await mfa.devices.begin_totp(name)
        key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))
        code = totp.hotp(key, totp.step_at(clock.now(), PERIOD))
        await mfa.devices.confirm_totp(name, binding.device.id, code)
        keys[name] = binding.secret_base32

    names = [f"u{i:06d}" for i in range(count)]
    for start in range(0, count, 200):
        await asyncio.gather(*(one(name) for name in names[start:start + 200]))
    mfa.close()
    await store.aclose()
    return keys


def codes_for(keys: dict[str, str], step: int) -> list[tuple[str, str]]:
    out = []
    for name, b32 in keys.items():
        key = base64.b32decode(b32 + "=" * (-len(b32) % 8))
        out.append((name, totp.hotp(key, step)))
    return out


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_ok(port: int) -> bool:
    """A Status-Server with Message-Authenticator answered."""
    authenticator = os.urandom(16)
    packet = encode_request(RadiusCode.STATUS_SERVER, 1, authenticator, SECRET, [])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.sendto(packet, ("127.0.0.1", port))
        try:
            return sock.recv(4096)[0] == RadiusCode.ACCESS_ACCEPT
        except OSError:
            return False


@contextlib.contextmanager
def mfad_running(config: Path, port: int, workers: int, log: Path,
                 tree: Path = REPO) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config),
                                    "--workers", str(workers)], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while not status_ok(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mfad did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            time.sleep(0.5 if workers == 1 else 2.0)  # every worker bound
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def cpu_busy(seconds: float = 2.0) -> float:
    """The fraction of all CPUs busy over ``seconds`` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


QUIET = {"busy": 0.15, "timeout": 300.0}


def wait_for_quiet() -> str:
    """Wait until the machine is idle (other work would be measured too); a note for the output."""
    deadline = time.monotonic() + QUIET["timeout"]
    while True:
        busy = cpu_busy()
        if busy <= QUIET["busy"]:
            return ""
        if time.monotonic() > deadline:
            return f" [machine {busy:.0%} busy with other work before this run]"
        time.sleep(3.0)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by ``pid``; 0 once it is gone."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its children (the workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return sum(process_cpu(one) for one in pids)


def backend_cpu(admin_dsn: str, database: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to ``database`` (the
    server runs on this machine). The server's shared processes (WAL writer, checkpointer)
    are not counted."""
    import asyncpg

    async def pids() -> list[int]:
        conn = await asyncpg.connect(admin_dsn)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
        finally:
            await conn.close()
        return [int(row["pid"]) for row in rows]

    return sum(process_cpu(pid) for pid in asyncio.run(pids()))


def run_sender(port: int, jobs: list[tuple[str, str]], in_flight: int, rate: float | None,
               work: Path, timeout: float = 3.0) -> dict[str, Any]:
    spec = work / f"jobs-{secrets.token_hex(4)}.json"
    spec.write_text(json.dumps(jobs))
    argv = [sys.executable, __file__, "send", "--target", f"127.0.0.1:{port}", "--jobs", str(spec),
            "--in-flight", str(in_flight), "--timeout", str(timeout)]
    if rate is not None:
        argv += ["--rate", str(rate)]
    out = subprocess.run(argv, check=True, capture_output=True, timeout=600).stdout
    spec.unlink()
    result: dict[str, Any] = json.loads(out)
    return result


# --- FreeRADIUS ------------------------------------------------------------------------------
FREERADIUS_MODES = {"-X": "full debug output, one thread", "-f": "thread pool", "-s": "one thread, no debug"}
FREERADIUS_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {{
  destination = files
  file = {dir}/radius.log
  auth = no
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
proxy_requests = no
thread pool {{
  start_servers = 4
  max_servers = 32
  min_spare_servers = 3
  max_spare_servers = 10
  max_requests_per_server = 0
}}
client bench {{
  ipaddr = 127.0.0.1
  secret = {secret}
}}
modules {{
{modules}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  authorize {{
{authorize}
  }}
  authenticate {{
{authenticate}
  }}
}}
"""


@dataclass(frozen=True)
class FreeradiusAuth:
    """How FreeRADIUS checks the password: its modules, authorize and authenticate sections
    (``{dir}`` is its config directory)."""
    modules: str
    authorize: str
    authenticate: str


#: PAP against the users file's Cleartext-Password.
PAP = FreeradiusAuth(modules="  pap {\n  }\n  files {\n    filename = {dir}/users\n  }",
                     authorize="    files\n    pap", authenticate="    Auth-Type PAP {\n      pap\n    }")


@contextlib.contextmanager
def freeradius_running(work: Path, users: list[tuple[str, str]], flag: str = "-f", auth: FreeradiusAuth = PAP,
                       name: str = "freeradius") -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """FreeRADIUS from a config directory ``work/name`` of its own: its port and process."""
    directory = work / name
    directory.mkdir(exist_ok=True)
    port = free_port()
    pieces = {key: getattr(auth, key).replace("{dir}", str(directory))
              for key in ("modules", "authorize", "authenticate")}
    (directory / "radiusd.conf").write_text(FREERADIUS_CONF.format(dir=directory, port=port,
                                                                   secret=SECRET.decode(), **pieces))
    (directory / "users").write_text("".join(f'{user} Cleartext-Password := "{password}"\n'
                                             for user, password in users))
    process = subprocess.Popen(["freeradius", flag, "-d", str(directory)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not status_ok(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("FreeRADIUS did not start: " + (directory / "radius.log").read_text()[-2000:])
            time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def radclient_rate(port: int, users: list[tuple[str, str]], count: int, in_flight: int, work: Path) -> float:
    """Requests/s that radclient gets answered: a 50-request file repeated with -c."""
    file = work / "radclient.txt"
    file.write_text("".join(f'User-Name = "{u}"\nUser-Password = "{p}"\nMessage-Authenticator = 0x00\n\n'
                            for u, p in users[:50]))
    started = time.perf_counter()
    out = subprocess.run(["radclient", "-q", "-s", "-c", str(count // 50), "-p", str(in_flight), "-r", "1",
                          "-t", "3", "-f", str(file), f"127.0.0.1:{port}", "auth", SECRET.decode()],
                         capture_output=True, text=True, timeout=600).stdout
    elapsed = time.perf_counter() - started
    accepted = re.search(r"Accepted\s*:\s*(\d+)", out)
    if accepted is None or int(accepted.group(1)) != count // 50 * 50:
        raise RuntimeError(f"radclient against FreeRADIUS: {out}")
    return count // 50 * 50 / elapsed


# --- orchestration -----------------------------------------------------------------------------
@dataclass
class Store:
    engine: str
    url: str
    key_file: Path
    keys: dict[str, str]
    used_step: int  # highest step whose codes were spent (the confirmation's)


def current_step() -> int:
    return int(time.time()) // PERIOD


def fresh_steps(store: Store, count: int, margin: float = 20.0) -> list[int]:
    """``count`` steps inside the ±1 window that no earlier run on this store spent, whose
    codes stay accepted for at least ``margin`` more seconds (a run must end before its
    step leaves the window; at most 60 s: the next step's codes are accepted 60-90 s)."""
    margin = min(margin, 2 * PERIOD)
    while True:
        now = time.time()
        step = int(now) // PERIOD
        steps = [s for s in (step - 1, step, step + 1) if s > store.used_step and (s + 2) * PERIOD - now >= margin]
        if len(steps) >= count:
            return steps[:count]
        time.sleep(1.0)


def setup_stores(args: argparse.Namespace, work: Path) -> list[Store]:
    stores = []
    for engine in args.engines:
        started = time.perf_counter()
        key_file = work / f"{engine}.key"
        if engine == "sqlite":
            path = work / "sqlite" / "mfad.db"
            url = f"sqlite:///{path}"
            keys = asyncio.run(create_users(url, key_file, args.users))
        else:
            import asyncpg

            name = f"mfad_bench_{secrets.token_hex(4)}"

            async def create_db() -> None:
                conn = await asyncpg.connect(args.pg_dsn)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                finally:
                    await conn.close()

            asyncio.run(create_db())
            url = re.sub(r"/[^/]*$", f"/{name}", args.pg_dsn)
            keys = asyncio.run(create_users(url, key_file, args.users))
        step = current_step() - 1
        print(f"# set up {args.users} users on {engine} in {time.perf_counter() - started:.1f} s", flush=True)
        stores.append(Store(engine, url, key_file, keys, step))
    return stores


def copy_store(store: Store, work: Path, tag: str, pg_dsn: str) -> Store:
    """A copy of a set-up store (its users' codes are fresh again)."""
    if store.engine == "sqlite":
        source = Path(store.url[len("sqlite:///"):])
        target = work / f"sqlite-{tag}" / "mfad.db"
        target.parent.mkdir(exist_ok=True)
        _sqlite_copy(source, target)
        url = f"sqlite:///{target}"
    else:
        import asyncpg

        name = f"{store.url.rsplit('/', 1)[1]}_{tag}"

        async def clone() -> None:
            conn = await asyncpg.connect(pg_dsn)
            try:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{store.url.rsplit("/", 1)[1]}"')
            finally:
                await conn.close()

        asyncio.run(clone())
        url = re.sub(r"/[^/]*$", f"/{name}", store.url)
    return Store(store.engine, url, store.key_file, store.keys, store.used_step)


def _sqlite_copy(source: Path, target: Path) -> None:
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def drop_databases(stores: list[Store], pg_dsn: str) -> None:
    names = [s.url.rsplit("/", 1)[1] for s in stores if s.engine == "postgres"]
    if not names:
        return
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            for name in sorted(set(names), key=len, reverse=True):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


#: The requests of one run, called with the seconds their codes must stay accepted.
Jobs = Callable[[float], list[tuple[str, str]]]


def totp_jobs(store: Store) -> Jobs:
    """Each call: every user's code of a step inside the window that ``store`` has not spent."""
    def jobs(margin: float) -> list[tuple[str, str]]:
        (step,) = fresh_steps(store, 1, margin)
        store.used_step = step
        return codes_for(store.keys, step)
    return jobs


def measure(port: int, jobs: Jobs, in_flight: int, work: Path, cpu: Callable[[], float],
            db_cpu: Callable[[], float] | None = None, on_peak: Callable[[], None] | None = None,
            timeout: float = 3.0, margin: float = 20.0) -> dict[str, Any]:
    """The maximum rate (closed loop, ``in_flight`` outstanding) with the server's CPU per
    accept (``cpu`` and ``db_cpu`` return CPU seconds used so far), then the latency open
    loop at half that rate. ``jobs`` is called after each wait for a quiet machine, with
    ``margin`` for the first run and about twice the first run's time for the second; a
    reply later than ``timeout`` seconds counts as a timeout."""
    note = wait_for_quiet()
    top_jobs = jobs(margin)
    before = cpu(), db_cpu() if db_cpu else 0.0
    top_run = run_sender(port, top_jobs, in_flight, None, work, timeout)
    accepts = max(1, top_run["accepts"])
    top_run["cpu_us"] = (cpu() - before[0]) / accepts * 1e6
    if db_cpu is not None:
        top_run["db_cpu_us"] = (db_cpu() - before[1]) / accepts * 1e6
    if on_peak is not None:
        on_peak()
    note += wait_for_quiet()
    half_run = run_sender(port, jobs(max(margin, 2.5 * top_run["elapsed"] + 10)), in_flight * 4,
                          top_run["rate"] / 2, work, timeout)
    return {"max": top_run, "half": half_run, "note": note}


@contextlib.contextmanager
def work_directory(keep: Path | None) -> Iterator[Path]:
    """``keep`` (created if needed and left), else a temporary directory removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="mfad-bench-")) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def bench_mfad(store: Store, workers: int, args: argparse.Namespace, work: Path, tree: Path = REPO,
               tag: str = "") -> dict[str, Any]:
    port, metrics_port = free_port(), free_port(socket.SOCK_STREAM)
    name = f"mfad-{store.engine}-{workers}{tag}"
    config = work / f"{name}.toml"
    config.write_text(config_text(store.url, store.key_file, port, metrics_port, workers, args.log_level))
    with mfad_running(config, port, workers, work / f"{name}.log", tree) as process:
        spy = None
        if args.py_spy:
            # Profile the serving process (with workers, the supervisor's children too).
            args.py_spy.parent.mkdir(parents=True, exist_ok=True)  # py-spy does not create it
            native = ["--native"] if args.py_spy_native else []
            spy = subprocess.Popen([_py_spy(), "record", "--subprocesses", *native, "-p", str(process.pid), "-r", "250",
                                    "-f", "raw", "-o", str(args.py_spy.with_suffix(f".{store.engine}{workers}{tag}.txt"))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)

        def stop_spy() -> None:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)

        database = store.url.rsplit("/", 1)[1]
        db_cpu = (lambda: backend_cpu(args.pg_dsn, database)) if store.engine == "postgres" else None
        result = measure(port, totp_jobs(store), args.in_flight, work, lambda: tree_cpu(process.pid), db_cpu,
                         stop_spy, args.timeout, args.margin)
    return {"engine": store.engine, "workers": workers, **result}


def _py_spy() -> str:
    """py-spy from this interpreter's environment (pip installs it there), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    send = sub.add_parser("send", help="(internal) the load generator process")
    send.add_argument("--target", required=True)
    send.add_argument("--jobs", required=True)
    send.add_argument("--in-flight", type=int, default=64)
    send.add_argument("--rate", type=float, default=None)
    send.add_argument("--timeout", type=float, default=3.0)
    send.add_argument("--trace", default=None, help="write 'send time, latency ms' per reply to this file")
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["sqlite", "postgres"])
    parser.add_argument("--workers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds before an unanswered request "
                        "counts as a timeout")
    parser.add_argument("--margin", type=float, default=20.0, help="seconds the codes of a maximum-rate run "
                        "stay accepted after it starts (at most 60)")
    parser.add_argument("--pg-dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN") or DEFAULT_PG)
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directory here")
    parser.add_argument("--quiet", type=float, default=0.15, metavar="FRACTION",
                        help="before each measurement wait (up to 5 min) until at most this much CPU is busy")
    parser.add_argument("--freeradius", type=lambda s: s.split(","), default=["-X", "-f", "-s"],
                        help="FreeRADIUS modes to measure (-X debug and one thread, -f thread pool, -s one thread)")
    parser.add_argument("--log-level", default="info",
                        help="mfad's [logging] level: info (the default, a line per decision) or warning")
    parser.add_argument("--trees", type=lambda s: [Path(p).resolve() for p in s.split(",")], default=[REPO],
                        metavar="DIR,DIR", help="run mfad from each of these source trees in turn against copies "
                        "of the same stores (before/after in one run); default: this tree")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="PREFIX",
                        help="profile mfad during the maximum-rate runs (raw py-spy output PREFIX.<engine><N>.txt)")
    parser.add_argument("--py-spy-native", action="store_true",
                        help="with --py-spy: also sample the C frames (the interpreter's, SQLite's, uvloop's)")
    args = parser.parse_args()
    if args.command == "send":
        return send_main(args)
    QUIET["busy"] = args.quiet

    with work_directory(args.keep) as work:
        return run(args, work)


def run(args: argparse.Namespace, work: Path) -> int:
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; work dir {work}", flush=True)
    stores = setup_stores(args, work)
    results = []
    made: list[Store] = list(stores)
    try:
        pap_users = [(name, f"pw-{name}") for name in list(stores[0].keys)[:args.users]]
        baselines: dict[str, float] = {}
        for flag in args.freeradius:
            with freeradius_running(work, pap_users, flag) as (fr_port, _):
                note = wait_for_quiet()
                baselines[flag] = max(radclient_rate(fr_port, pap_users, 100_000, 64, work) for _ in range(2))
                line = (f"FreeRADIUS PAP {flag} ({FREERADIUS_MODES.get(flag, flag)}): radclient -p 64 "
                        f"{baselines[flag]:,.0f} req/s{note}")
                if flag == "-f":
                    fr_sender = run_sender(fr_port, pap_users, args.in_flight, None, work)
                    line += (f"; this script's sender {fr_sender['rate']:,.0f} req/s "
                             f"(p50 {fr_sender['p50_ms']:.2f} ms, p99 {fr_sender['p99_ms']:.2f} ms)")
                print(line, flush=True)
        runs = [(store, workers, t, tree) for store in stores for workers in args.workers
                for t, tree in enumerate(args.trees)]
        for store, workers, t, tree in runs:
            tag = f"-t{t}" if len(args.trees) > 1 else ""
            target = copy_store(store, work, f"w{workers}{tag.replace('-', '')}", args.pg_dsn)
            made.append(target)
            result = bench_mfad(target, workers, args, work, tree, tag)
            results.append(result)
            top, half = result["max"], result["half"]
            problems = {k: top[k] + half[k] for k in ("rejects", "others", "timeouts", "bad_replies")
                        if top[k] + half[k]}
            ratios = ", ".join(f"{top['rate'] / rate:.2f}x FreeRADIUS {flag}" for flag, rate in baselines.items())
            label = f" [{tree}]" if len(args.trees) > 1 else ""
            print(f"mfad {store.engine:8} {workers} worker{'s' if workers > 1 else ' '}{label}: "
                  f"{top['rate']:,.0f} req/s (p50 {top['p50_ms']:.2f} ms, p99 {top['p99_ms']:.2f} ms, "
                  f"{top['cpu_us']:.0f} us CPU/accept) = {ratios}; "
                  f"at {half['rate']:,.0f} req/s: p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms"
                  f"{'; NOT ACCEPTED: ' + str(problems) if problems else ''}{result['note']}", flush=True)
            result["tree"] = t
        for t, tree in enumerate(args.trees):
            for workers in args.workers:
                rate = {r["engine"]: r["max"]["rate"] for r in results if r["tree"] == t and r["workers"] == workers}
                if "sqlite" in rate and "postgres" in rate:
                    label = f" [{tree}]" if len(args.trees) > 1 else ""
                    print(f"postgres/sqlite, {workers} worker{'s' if workers > 1 else ''}{label}: "
                          f"{rate['postgres'] / rate['sqlite']:.2f}x", flush=True)
    finally:
        drop_databases(made, args.pg_dsn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
