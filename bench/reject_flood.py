"""Valid RADIUS sign-ins while one NAS address floods mfad with wrong codes.

All on loopback, one ``mfad serve`` (one worker, uvloop, SQLite, the defaults for the
reject delay, the client rates, the in-flight shares and the ``[limits]`` buckets):

- the **flood**: ``--flood-rate`` (10,000) Access-Requests a second from 127.0.0.2, each a
  wrong code for one of ``--flood-users`` users of their own (so no valid user is locked
  out by it), every packet a new request (its own authenticator: none is a retransmission
  the reply cache would answer). Encoded before the flood starts, then sent open loop by
  a process of its own that reads the replies only to count them;
- the **valid sign-ins**: the current code of users that are not flooded, open loop at
  ``--rate`` a second in all, from ``--sources`` other addresses (127.0.0.3 on), each
  request answered or timed out (3 s) and its latency taken.

First the valid sign-ins alone for ``--seconds``, then the same with the flood running
(started 2 s before, so the flooding source's failure bucket is empty and its codes are
refused before their check). Prints p50/p99 of the valid sign-ins in both phases,
whether p99 stays within ``--target-ms`` (20), and what happened to the flood (answers,
mfad's drops by reason, mfad's CPU).

Where the addresses are configured (``--layout``): ``clients``, each address its own
``[[radius.clients]]`` entry; ``network``, one client ``127.0.0.0/24`` they all belong to
(each host is its own *source* for the failure buckets, but they share the client's rate
and in-flight share). Both by default.

    PYTHONPATH=. nice -n 5 .venv/bin/python bench/reject_flood.py [--rate 200] [--seconds 10]
        [--sources 4] [--flood-rate 10000] [--layout clients,network] [--log-level info]
        [--reject-delay S] [--client-rate R] [--flood-unknown] [--py-spy PREFIX] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import radius_load as rl  # noqa: E402

from mfad.radius.attributes import Attr  # noqa: E402
from mfad.radius.codec import RadiusCode, encode_request, hide_password  # noqa: E402

FLOOD_SOURCE = "127.0.0.2"
FIRST_VALID_SOURCE = 3  # 127.0.0.3, 127.0.0.4, ...
WARM_UP = 2.0  # seconds of flood before the valid sign-ins: the flooding source's bucket is empty then


def valid_sources(count: int) -> list[str]:
    return [f"127.0.0.{FIRST_VALID_SOURCE + i}" for i in range(count)]


# --- the flood (a process of its own) -------------------------------------------------------------
def flood_main(args: argparse.Namespace) -> int:
    users = json.loads(Path(args.users).read_text())
    host, _, port = args.target.rpartition(":")
    count = int(args.rate * args.seconds)
    packets = []
    for n in range(count):  # encoded first: the sending loop only sends
        authenticator = os.urandom(16)
        wrong = f"{secrets.randbelow(10**6):06d}".encode()
        packets.append(encode_request(RadiusCode.ACCESS_REQUEST, n & 0xFF, authenticator, rl.SECRET, [
            (Attr.USER_NAME, users[n % len(users)].encode()),
            (Attr.USER_PASSWORD, hide_password(wrong, rl.SECRET, authenticator)),
            (Attr.NAS_IDENTIFIER, b"flood"),
        ]))
    # Several source ports: 256 identifiers per port are in flight at once otherwise.
    sockets = []
    for _ in range(16):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((args.source, 0))
        sock.setblocking(False)
        sockets.append(sock)
    target = (host, int(port))
    replies: dict[int, int] = {}

    def drain() -> None:
        for sock in sockets:
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                replies[data[0]] = replies.get(data[0], 0) + 1

    print("ready", flush=True)
    sent = 0
    started = time.perf_counter()
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * args.rate))
        while sent < due:
            with contextlib.suppress(BlockingIOError):
                sockets[sent % len(sockets)].sendto(packets[sent], target)
            sent += 1
        drain()
        time.sleep(0.0005)
    elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 1.5  # the reject delay: the last answers come a second later
    while time.monotonic() < deadline:
        drain()
        time.sleep(0.01)
    print(json.dumps({"sent": sent, "seconds": elapsed, "rate": sent / elapsed,
                      "replies": {RadiusCode(k).name: v for k, v in replies.items()}}))
    return 0


# --- the valid sign-ins (a process of their own) --------------------------------------------------
def valid_main(args: argparse.Namespace) -> int:
    spec: dict[str, list[tuple[str, str]]] = json.loads(Path(args.jobs).read_text())
    host, _, port = args.target.rpartition(":")
    import gc

    import uvloop

    gc.freeze()
    gc.disable()  # the load generator's own pauses must not show up as the server's latency

    async def run() -> list[dict[str, Any]]:
        senders = [rl.Sender(host, int(port), [rl.Job(u, p.encode()) for u, p in jobs], 64,
                             args.rate / len(spec), source=source) for source, jobs in spec.items()]
        results = await asyncio.gather(*(s.run() for s in senders))
        for sender, result in zip(senders, results):
            result["latencies_ms"] = [1000 * x for x in sender.latencies]
        return list(results)

    results = uvloop.run(run())
    latencies = sorted(x for r in results for x in r.pop("latencies_ms"))
    total = {k: sum(r[k] for r in results) for k in ("sent", "accepts", "rejects", "others", "timeouts",
                                                      "bad_replies")}
    total["p50_ms"] = statistics.median(latencies) if latencies else None
    total["p99_ms"] = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    total["max_ms"] = latencies[-1] if latencies else None
    total["rate"] = len(latencies) / max(r["elapsed"] for r in results)
    print(json.dumps(total))
    return 0


# --- orchestration --------------------------------------------------------------------------------
def config_text(store_url: str, key_file: Path, port: int, metrics_port: int, layout: str, sources: list[str],
                args: argparse.Namespace) -> str:
    if layout == "clients":
        # 127.0.0.1 is a client too: the readiness probe (Status-Server) comes from it.
        hosts = [("probe", "127.0.0.1")] + ([] if args.flood_unknown else [("flood", FLOOD_SOURCE)]) \
            + [(f"nas{i}", s) for i, s in enumerate(sources)]
        clients = "".join(f'[[radius.clients]]\nname = "{name}"\naddress = "{address}"\nsecret = '
                          f'"{rl.SECRET.decode()}"\nmode = "otp_only"\n' for name, address in hosts)
    else:
        if args.flood_unknown:
            raise SystemExit("--flood-unknown needs --layout clients (the network holds the flood's address)")
        clients = (f'[[radius.clients]]\nname = "loopback"\naddress = "127.0.0.0/24"\nsecret = '
                   f'"{rl.SECRET.decode()}"\nmode = "otp_only"\n')
    settings = "" if args.reject_delay is None else f"reject_delay_seconds = {args.reject_delay}\n"
    if args.client_rate is not None:
        settings += f"client_rate_per_second = {args.client_rate}\n"
    return rl.config_text(store_url, key_file, port, metrics_port, 1, args.log_level, settings + clients)


def drops(metrics_port: int) -> dict[str, float]:
    """mfad's dropped packets so far, by (client, reason)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mfad_radius_packets_dropped_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels.get('client', '?')}:{labels.get('reason', '?')}"
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def run_json(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def valid_run(port: int, jobs: dict[str, list[tuple[str, str]]], rate: float, work: Path,
              seconds: float) -> dict[str, Any]:
    spec = work / f"valid-{secrets.token_hex(4)}.json"
    spec.write_text(json.dumps(jobs))
    return run_json([sys.executable, __file__, "valid", "--target", f"127.0.0.1:{port}", "--jobs", str(spec),
                     "--rate", str(rate)], timeout=seconds * 4 + 60)


def measure(layout: str, store: rl.Store, users: list[str], flood_users: list[str], args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    port, metrics_port = rl.free_port(), rl.free_port(socket.SOCK_STREAM)
    sources = valid_sources(args.sources)
    config = work / f"mfad-{layout}.toml"
    config.write_text(config_text(store.url, store.key_file, port, metrics_port, layout, sources, args))
    per_phase = int(args.rate * args.seconds)
    step = rl.current_step()  # a code of this step is accepted for the next minute or more
    codes = dict(rl.codes_for({u: store.keys[u] for u in users}, step))

    def jobs(phase: int) -> dict[str, list[tuple[str, str]]]:
        mine = users[phase * per_phase:(phase + 1) * per_phase]
        return {s: [(u, codes[u]) for u in mine[i::len(sources)]] for i, s in enumerate(sources)}

    flood_file = work / "flood-users.json"
    flood_file.write_text(json.dumps(flood_users))
    result: dict[str, Any] = {"layout": layout}
    with rl.mfad_running(config, port, 1, work / f"mfad-{layout}.log") as process:
        result["quiet"] = valid_run(port, jobs(0), args.rate, work, args.seconds)
        before_drops, before_cpu = drops(metrics_port), rl.tree_cpu(process.pid)
        flood = subprocess.Popen([sys.executable, __file__, "flood", "--target", f"127.0.0.1:{port}",
                                  "--source", FLOOD_SOURCE, "--rate", str(args.flood_rate),
                                  "--seconds", str(args.seconds + WARM_UP + 2.0), "--users", str(flood_file)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert flood.stdout is not None
            if flood.stdout.readline().strip() != "ready":  # its packets are encoded first
                raise RuntimeError("the flood did not start")
            time.sleep(WARM_UP)
            spy = None
            if args.py_spy:  # the flooded phase, raw collapsed stacks
                args.py_spy.parent.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen([rl._py_spy(), "record", "-p", str(process.pid), "-r", "250", "-f", "raw",
                                        "--nonblocking", "-o", str(args.py_spy.with_suffix(f".{layout}.txt"))],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result["flooded"] = valid_run(port, jobs(1), args.rate, work, args.seconds)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            out, _ = flood.communicate(timeout=args.seconds * 4 + 60)
        finally:
            if flood.poll() is None:
                flood.send_signal(signal.SIGTERM)
                flood.wait(10)
        result["flood"] = json.loads(out.strip().splitlines()[-1])
        result["cpu_s"] = rl.tree_cpu(process.pid) - before_cpu
        after = drops(metrics_port)
        result["drops"] = {k: int(v - before_drops.get(k, 0.0)) for k, v in after.items()
                           if v - before_drops.get(k, 0.0) > 0}
    return result


def describe(phase: dict[str, Any]) -> str:
    problems = {k: phase[k] for k in ("rejects", "others", "timeouts", "bad_replies") if phase[k]}
    return (f"{phase['accepts']}/{phase['sent']} accepted at {phase['rate']:.0f}/s, p50 {phase['p50_ms']:.2f} ms, "
            f"p99 {phase['p99_ms']:.2f} ms, max {phase['max_ms']:.1f} ms"
            + (f"; NOT ACCEPTED: {problems}" if problems else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    flood = sub.add_parser("flood", help="(internal) the flooding NAS")
    flood.add_argument("--target", required=True)
    flood.add_argument("--source", required=True)
    flood.add_argument("--rate", type=float, required=True)
    flood.add_argument("--seconds", type=float, required=True)
    flood.add_argument("--users", required=True)
    valid = sub.add_parser("valid", help="(internal) the NASes signing users in")
    valid.add_argument("--target", required=True)
    valid.add_argument("--jobs", required=True)
    valid.add_argument("--rate", type=float, required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="valid sign-ins a second, all sources together")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--sources", type=int, default=4, help="addresses the valid sign-ins come from")
    parser.add_argument("--flood-rate", type=float, default=10_000.0)
    parser.add_argument("--flood-users", type=int, default=200)
    parser.add_argument("--layout", type=lambda s: s.split(","), default=["clients", "network"])
    parser.add_argument("--log-level", default="info", help="mfad's [logging] level")
    parser.add_argument("--reject-delay", type=float, default=None, help="mfad's reject_delay_seconds (default: its own)")
    parser.add_argument("--client-rate", type=float, default=None,
                        help="mfad's client_rate_per_second, every client's (default: its own, 500/s for otp_only)")
    parser.add_argument("--flood-unknown", action="store_true",
                        help="the flooding address is no configured client (its packets cost only their reception)")
    parser.add_argument("--target-ms", type=float, default=20.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directory here")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="PREFIX",
                        help="profile mfad during the flooded phase (raw py-spy output PREFIX.<layout>.txt)")
    args = parser.parse_args()
    if args.command == "flood":
        return flood_main(args)
    if args.command == "valid":
        return valid_main(args)

    work = Path(tempfile.mkdtemp(prefix="mfad-flood-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; work dir {work}", flush=True)
    valid_count = 2 * int(args.rate * args.seconds)
    started = time.perf_counter()
    key_file = work / "sqlite.key"
    url = f"sqlite:///{work / 'sqlite' / 'mfad.db'}"
    keys = asyncio.run(rl.create_users(url, key_file, valid_count + args.flood_users))
    names = sorted(keys)
    users, flood_users = names[:valid_count], names[valid_count:]
    print(f"# set up {len(names)} users in {time.perf_counter() - started:.1f} s", flush=True)
    base = rl.Store("sqlite", url, key_file, keys, rl.current_step() - 1)
    failed = False
    try:
        for layout in args.layout:
            result = measure(layout, rl.copy_store(base, work, layout, ""), users, flood_users, args, work)
            quiet, flooded, f = result["quiet"], result["flooded"], result["flood"]
            ok = flooded["p99_ms"] is not None and flooded["p99_ms"] <= args.target_ms and not flooded["timeouts"]
            failed = failed or not ok
            print(f"layout {layout}: valid sign-ins from {args.sources} sources at {args.rate:.0f}/s, "
                  f"{args.seconds:.0f} s each phase", flush=True)
            print(f"  without the flood: {describe(quiet)}")
            print(f"  with the flood:    {describe(flooded)}")
            print(f"  flood from {FLOOD_SOURCE}: {f['sent']} wrong codes at {f['rate']:,.0f}/s, answers {f['replies']}; "
                  f"mfad dropped {result['drops']}; mfad CPU {result['cpu_s']:.1f} s during the flood phase")
            print(f"  p99 with the flood {'<=' if ok else 'EXCEEDS'} {args.target_ms:.0f} ms"
                  f" ({flooded['p99_ms']:.2f} ms vs {quiet['p99_ms']:.2f} ms without)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
