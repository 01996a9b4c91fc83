"""RADIUS load benchmark: mfad ``otp_only`` with valid codes against FreeRADIUS PAP.

What it does, all on this machine and on loopback:

1. Sets up a store with ``--users`` users (default 20,000), each with a confirmed TOTP
   device, through the core (``Mfa.users.create``, ``devices.begin_totp`` and
   ``confirm_totp``; only the QR-code rendering of the binding is skipped), or above
   20,000 users through ``mfad import`` in batches (``--setup``), on SQLite and on
   PostgreSQL (``$MFAD_TEST_POSTGRES_DSN``, a fresh database). Copies of the set-up store
   serve the 1- and 2-worker runs, and every code sent is one the replay guard has not
   seen: one request per user and step (``--requests``: that many users picked at random).
   ``--sizes 10000,1000000`` measures a store of each size instead and prints the ratio of
   their p50 latencies and each worker's RSS (bench/README.md).
2. Starts FreeRADIUS answering PAP from a users file with the same user names, on
   another port, from a config directory of its own, in three modes: ``-X`` (full
   debug output, one thread), ``-f`` (its thread pool) and ``-s`` (one thread, no
   debug), and measures each with ``radclient`` (a 50-request file repeated with
   ``-c``, ``-p 64``); ``-f`` also with this script's sender.
3. Starts ``mfad serve --workers N`` (uvloop; an ``otp_only`` client; no reject delay;
   the per-client rate limit lifted; defaults otherwise) and, in a separate process,
   this script's async sender: one Access-Request with Message-Authenticator per user
   with the user's current code, ``--in-flight`` outstanding (closed loop): the
   maximum rate, with the CPU mfad used per accept (on PostgreSQL, its backends' too);
   then the next step's codes, open loop at ``--latency-rate`` (half) of that rate: the
   latency there; with each worker's peak RSS and the store's mean time per operation. Replies are checked (code, Response
   Authenticator); anything but an Access-Accept is reported.

Prints requests/s, p50/p99 latency and the ratio mfad/FreeRADIUS for each mode. Every
Access-Accept that mfad sends follows the commit of its replay guard and audit row
(group commit on SQLite, a transaction per request on PostgreSQL). Before each
measurement it waits (up to 5 minutes) for the machine to be idle, and says so when
it was not: the machine is shared, trust the ratios of one run more than the
absolute figures.

    PYTHONPATH=. python bench/radius_load.py [--users 20000] [--engines sqlite,postgres]
        [--workers 1,2] [--in-flight 64] [--freeradius=-X,-f,-s] [--keep DIR] [--py-spy PREFIX]
        [--requests 20000] [--latency-rate 0.5] [--setup core|import] [--timeout 3] [--margin 20]
    PYTHONPATH=. python bench/radius_load.py --sizes 10000,1000000 [--rounds 3] [--engines ...]
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
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def import_users(store_url: str, key_file: Path, count: int, work: Path) -> tuple[dict[str, str], float]:
    """``count`` users with active TOTP devices, through ``mfad import otpauth --create-users``
    (batched, docs/import.md) from a file of random secrets. Returns name → base32 key and the
    import's wall time (the command's, schema creation excluded). No code is spent yet."""
    keys = {f"u{i:07d}": base64.b32encode(secrets.token_bytes(20)).decode() for i in range(count)}
    uris = work / f"import-{secrets.token_hex(4)}.txt"
    fd = os.open(uris, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # secrets: the owner's only
    with os.fdopen(fd, "w") as out:
        out.writelines(f"otpauth://totp/bench:{name}?secret={b32}&issuer=bench\n" for name, b32 in keys.items())
    config = work / f"import-{secrets.token_hex(4)}.toml"
    config.write_text(config_text(store_url, key_file, free_port(), free_port(socket.SOCK_STREAM), 1))
    mfad = [sys.executable, "-m", "mfad"]
    subprocess.run([*mfad, "migrate", "--config", str(config)], check=True, capture_output=True, timeout=600)
    started = time.perf_counter()
    subprocess.run([*mfad, "import", "otpauth", "--create-users", "--config", str(config), str(uris)], check=True,
                   capture_output=True, timeout=7200)
    elapsed = time.perf_counter() - started
    uris.unlink()
    return keys, elapsed


def codes_for(keys: dict[str, str], step: int, names: list[str] | None = None) -> list[tuple[str, str]]:
    """The code of ``step`` for each of ``names`` (default: every user)."""
    out = []
    for name in keys if names is None else names:
        b32 = keys[name]
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
        # In the tree: ``python -m`` puts the working directory ahead of PYTHONPATH, so run from
        # another checkout it would import that checkout's mfad, not the tree's.
        process = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config),
                                    "--workers", str(workers)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=tree)
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


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its children (the workers)."""
    return sum(process_cpu(one) for one in tree_pids(pid))


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


class RssPeak:
    """The highest resident set size (VmRSS, /proc) of each RADIUS worker while it runs:
    ``pid`` itself with one worker, its children (not the supervisor) with several."""

    def __init__(self, pid: int, workers: int, every: float = 0.2) -> None:
        self.pid, self.workers, self.every = pid, workers, every
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            pids = tree_pids(self.pid)
            for one in pids[1:] if self.workers > 1 else pids[:1]:
                with contextlib.suppress(OSError, StopIteration):
                    line = next(ln for ln in Path(f"/proc/{one}/status").read_text().splitlines()
                                if ln.startswith("VmRSS:"))
                    self.peak[one] = max(self.peak.get(one, 0), int(line.split()[1]) * 1024)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mib(self) -> float:
        return max(self.peak.values(), default=0) / 2**20


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


def next_step(store: Store, names: list[str] | None, margin: float = 20.0) -> int:
    """The step whose codes the next run sends. Every user once (``names`` None): the freshest
    step of the window (:func:`fresh_steps`, ``margin``). Users picked at random meet again from run to
    run, and an accepted code moves a device's window (its drift) by up to a step: then the
    current step, once it is newer than the last run's (at most a period's wait), which is
    inside every device's window whatever its drift, for at least a period."""
    if names is None:
        (step,) = fresh_steps(store, 1, margin)
        return step
    while current_step() <= store.used_step:
        time.sleep(0.5)
    return current_step()


def setup_store(engine: str, users: int, pg_dsn: str, work: Path, tag: str = "", how: str | None = None) -> Store:
    """A store of ``users`` users with TOTP devices: through the core, one by one (``how``
    "core"), or through ``mfad import`` in batches ("import", what a million needs; the
    default above 20,000 users)."""
    started = time.perf_counter()
    key_file = work / f"{engine}{tag}.key"
    if engine == "sqlite":
        path = work / f"sqlite{tag}" / "mfad.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    else:
        name = f"mfad_bench_{secrets.token_hex(4)}"
        pg_execute(pg_dsn, f'CREATE DATABASE "{name}"')
        url = re.sub(r"/[^/]*$", f"/{name}", pg_dsn)
    if (how or ("import" if users > 20000 else "core")) == "import":
        keys, took = import_users(url, key_file, users, work)
        note, step = f" (mfad import: {took:.1f} s)", current_step() - 2  # no code spent yet
        if engine == "postgres":
            note += f"; VACUUM ANALYZE {vacuum(url):.1f} s"
    else:
        keys, note, step = asyncio.run(create_users(url, key_file, users)), " (through the core)", current_step() - 1
    print(f"# set up {users:,} users on {engine} in {time.perf_counter() - started:.1f} s{note}", flush=True)
    return Store(engine, url, key_file, keys, step)


def pg_execute(dsn: str, *statements: str) -> None:
    """Run ``statements`` on one connection to ``dsn`` (outside a transaction)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def vacuum(url: str) -> float:
    """VACUUM ANALYZE a freshly imported PostgreSQL store (its seconds): what autovacuum would
    start on its own a little later, not during a measurement."""
    started = time.perf_counter()
    pg_execute(url, "VACUUM ANALYZE")
    return time.perf_counter() - started


def setup_stores(args: argparse.Namespace, work: Path, how: str | None = None) -> list[Store]:
    """A store of ``args.users`` users on each of ``args.engines`` (:func:`setup_store`)."""
    return [setup_store(engine, args.users, args.pg_dsn, work, how=how) for engine in args.engines]


def copy_store(store: Store, work: Path, tag: str, pg_dsn: str) -> Store:
    """A copy of a set-up store (its users' codes are fresh again)."""
    if store.engine == "sqlite":
        source = Path(store.url[len("sqlite:///"):])
        target = work / f"sqlite-{tag}" / "mfad.db"
        target.parent.mkdir(exist_ok=True)
        _sqlite_copy(source, target)
        url = f"sqlite:///{target}"
    else:
        name = f"{store.url.rsplit('/', 1)[1]}_{tag}"
        pg_execute(pg_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{store.url.rsplit("/", 1)[1]}"')
        url = re.sub(r"/[^/]*$", f"/{name}", store.url)
    return Store(store.engine, url, store.key_file, store.keys, store.used_step)


def _sqlite_copy(source: Path, target: Path) -> None:
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def drop_databases(stores: list[Store], pg_dsn: str) -> None:
    names = [s.url.rsplit("/", 1)[1] for s in stores if s.engine == "postgres"]
    if names:
        pg_execute(pg_dsn, *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                             for name in sorted(set(names), key=len, reverse=True)))


def sample_names(store: Store, count: int) -> list[str] | None:
    """``count`` users picked at random across the whole store (None: every user), so that a
    run reads rows all over the indexes, not a few cached pages."""
    return None if count <= 0 or count >= len(store.keys) else random.sample(list(store.keys), count)


#: The requests of one run, called with the seconds their codes must stay accepted.
Jobs = Callable[[float], list[tuple[str, str]]]


#: The seconds the current step's codes of users picked at random stay accepted, at least
#: (:func:`next_step`): a run of them must end within these.
PICKED_LAST = 1.6 * PERIOD


def totp_jobs(store: Store, requests: int = 0) -> Jobs:
    """Each call: every user's code of a step inside the window that ``store`` has not spent,
    or (``requests``) that many users picked at random (:func:`sample_names`), with the
    current step's codes; when the codes must stay accepted longer than :data:`PICKED_LAST`,
    proportionally fewer, for the run to end within it."""
    def jobs(margin: float) -> list[tuple[str, str]]:
        count = requests if margin <= PICKED_LAST else max(1, int(requests * PICKED_LAST / margin))
        names = sample_names(store, count) if requests else None
        step = next_step(store, names, margin)  # after the wait: the codes must still be in the window
        store.used_step = step
        return codes_for(store.keys, step, names)
    return jobs


def measure(port: int, jobs: Jobs, in_flight: int, work: Path, cpu: Callable[[], float],
            db_cpu: Callable[[], float] | None = None, on_peak: Callable[[], None] | None = None,
            timeout: float = 3.0, margin: float = 20.0, latency_rate: float = 0.5,
            half_rate: float | None = None) -> dict[str, Any]:
    """The maximum rate (closed loop, ``in_flight`` outstanding) with the server's CPU per
    accept (``cpu`` and ``db_cpu`` return CPU seconds used so far), then the latency open
    loop at ``half_rate``, by default ``latency_rate`` times the maximum (the result's
    "half_rate"). ``jobs`` is called after each wait for a quiet machine, with ``margin``
    for the first run and a quarter more than the second run's time at its rate (with as
    many requests as the first) plus 10 s for the second; a reply later than ``timeout``
    seconds counts as a timeout."""
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
    half_rate = half_rate or top_run["rate"] * latency_rate
    note += wait_for_quiet()
    half_run = run_sender(port, jobs(max(margin, 1.25 * len(top_jobs) / half_rate + 10)), in_flight * 4,
                          half_rate, work, timeout)
    return {"max": top_run, "half": half_run, "note": note, "half_rate": half_rate}


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
               tag: str = "", requests: int = 0, latency_rate: float = 0.5,
               half_rate: float | None = None) -> dict[str, Any]:
    """:func:`measure` on ``mfad serve --workers N`` from ``tree`` on ``store``
    (:func:`totp_jobs`: ``requests`` users picked at random, else every user), with each
    worker's peak RSS and the store's mean time per operation."""
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
        with RssPeak(process.pid, workers) as rss:
            result = measure(port, totp_jobs(store, requests), args.in_flight, work, lambda: tree_cpu(process.pid),
                             db_cpu, stop_spy, args.timeout, args.margin, latency_rate, half_rate)
        store_ms = store_means(metrics_port)
    return {"engine": store.engine, "workers": workers, **result, "rss_mib": rss.max_mib, "store_ms": store_ms}


def store_means(metrics_port: int) -> dict[str, float]:
    """Mean milliseconds of each store operation done more than 1,000 times, over the
    server's life (``mfad_store_operation_duration_seconds`` on its metrics port; with several
    workers, the one that answered)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    sums: dict[tuple[str, str], float] = {}
    for kind, op, value in re.findall(r'^mfad_store_operation_duration_seconds_(sum|count)\{operation="([^"]+)"\} '
                                      r'(\S+)$', text, re.M):
        sums[kind, op] = float(value)
    return {op: 1000 * sums["sum", op] / count for (kind, op), count in sums.items()
            if kind == "count" and count > 1000}


def _py_spy() -> str:
    """py-spy from this interpreter's environment (pip installs it there), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def result_line(result: dict[str, Any], ratios: str = "") -> str:
    top, half = result["max"], result["half"]
    problems = {k: top[k] + half[k] for k in ("rejects", "others", "timeouts", "bad_replies") if top[k] + half[k]}
    return (f"{top['rate']:,.0f} req/s (p50 {top['p50_ms']:.2f} ms, p99 {top['p99_ms']:.2f} ms, "
            f"{top['cpu_us']:.0f} us CPU/accept){ratios}; at {half['rate']:,.0f} req/s: p50 {half['p50_ms']:.2f} ms, "
            f"p99 {half['p99_ms']:.2f} ms; worker RSS max {result['rss_mib']:.0f} MiB; store ms per call: "
            f"{', '.join(f'{op} {ms:.2f}' for op, ms in sorted(result['store_ms'].items()))}"
            f"{'; NOT ACCEPTED: ' + str(problems) if problems else ''}{result['note']}")


def run_sizes(args: argparse.Namespace, work: Path, made: list[Store]) -> None:
    """Per engine, a store of each of ``--sizes`` users (set up through ``mfad import``),
    measured alike in ``--rounds`` rounds taking turns (a disturbance of the shared machine
    falls on one run, not on one size): ``--requests`` users picked at random across the
    store, the maximum rate, then the latency at one open-loop rate for every size and round
    (``--latency-rate`` times the first maximum). Prints p50(largest) / p50(smallest), of the
    median p50 of each size's rounds. Each engine's stores are deleted after its runs."""
    workers = args.workers[0]
    for engine in args.engines:
        # Every size alike: through mfad import unless told otherwise.
        stores = {size: setup_store(engine, size, args.pg_dsn, work, f"-{size}", args.setup or "import")
                  for size in args.sizes}
        made += stores.values()
        half_rate: float | None = None
        p50: dict[int, list[tuple[float, float]]] = {size: [] for size in args.sizes}
        for turn in range(args.rounds):
            for size, store in stores.items():
                result = bench_mfad(store, workers, args, work, tag=f"-{size}", requests=args.requests,
                                    latency_rate=args.latency_rate, half_rate=half_rate)
                half_rate = result["half_rate"]
                p50[size].append((result["max"]["p50_ms"], result["half"]["p50_ms"]))
                print(f"mfad {engine:8} {size:>9,} users, {workers} worker{'s' if workers > 1 else ''}, "
                      f"round {turn + 1}: {result_line(result)}", flush=True)
        drop_databases(list(stores.values()), args.pg_dsn)
        for store in stores.values():
            if engine == "sqlite":
                shutil.rmtree(Path(store.url[len("sqlite:///"):]).parent, ignore_errors=True)
        small, large = min(p50), max(p50)

        def ratio(which: int) -> float:
            return statistics.median(r[which] for r in p50[large]) / statistics.median(r[which] for r in p50[small])

        assert half_rate is not None
        print(f"{engine}: p50({large:,}) / p50({small:,}) = {ratio(1):.2f} at {half_rate:,.0f} req/s "
              f"(maximum-rate runs: {ratio(0):.2f}; medians of {args.rounds} round(s)); "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


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
    parser.add_argument("--setup", choices=("core", "import"), default=None,
                        help="how the stores get their users: through the core one by one, or through "
                        "'mfad import' in batches (default: import above 20,000 users)")
    parser.add_argument("--requests", type=int, default=20000,
                        help="users sent for per run, picked at random across the store (0: every user once)")
    parser.add_argument("--rounds", type=int, default=3, help="with --sizes: rounds of runs, the sizes taking turns")
    parser.add_argument("--latency-rate", type=float, default=0.5, metavar="FRACTION",
                        help="the latency run's open-loop rate, a fraction of the maximum (with --sizes: of the "
                        "first size's, for every size)")
    parser.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")], default=None,
                        metavar="N,N", help="measure a store of each size in turn (the first of --workers, no "
                        "FreeRADIUS) and print p50(largest) / p50(smallest) per engine")
    args = parser.parse_args()
    if args.command == "send":
        return send_main(args)
    QUIET["busy"] = args.quiet

    with work_directory(args.keep) as work:
        return run(args, work)


def run(args: argparse.Namespace, work: Path) -> int:
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; work dir {work}", flush=True)
    if args.sizes:
        made: list[Store] = []
        try:
            run_sizes(args, work, made)
        finally:
            drop_databases(made, args.pg_dsn)
        return 0
    stores = setup_stores(args, work, args.setup)
    results = []
    made = list(stores)
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
            target = store  # one run: the set-up store itself (a copy of a million users costs minutes)
            if len(args.workers) * len(args.trees) > 1:
                target = copy_store(store, work, f"w{workers}{tag.replace('-', '')}", args.pg_dsn)
                made.append(target)
            result = bench_mfad(target, workers, args, work, tree, tag, args.requests, args.latency_rate)
            results.append(result)
            ratios = "".join(f"{', ' if i else ' = '}{result['max']['rate'] / rate:.2f}x FreeRADIUS {flag}"
                             for i, (flag, rate) in enumerate(baselines.items()))
            label = f" [{tree}]" if len(args.trees) > 1 else ""
            print(f"mfad {store.engine:8} {workers} worker{'s' if workers > 1 else ' '}{label}: "
                  f"{result_line(result, ratios)}", flush=True)
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
