"""Instructions per accepted RADIUS request, counted by valgrind (callgrind): a figure
that other work on a shared machine does not move.

``bench/radius_load.py`` measures rates and CPU time, both of which follow whatever
else the machine runs (a 2-core VM shared with test suites measured anywhere from
130 to 550 µs CPU per accept for the same code). This script sets up the same store
(users with confirmed TOTP devices, through the core), starts ``mfad serve`` (one
worker, uvloop, an ``otp_only`` client) under ``valgrind --tool=callgrind`` with the
instrumentation off, sends ``--warm-up`` requests, switches counting on, sends
``--requests`` more (valid codes, ``--in-flight`` outstanding), dumps the count and
prints instructions (user space, every thread of mfad: the loop and SQLite's commit
thread) per Access-Accept. Kernel work (system calls, fsync) is not in the count;
``radius_load.py`` shows it as CPU time.

Run it for two source trees to compare them with the same interpreter and set-up
(``--tree`` is the root of another checkout; its ``bench/radius_load.py`` provides
the set-up and the sender):

    PYTHONPATH=. python bench/radius_cost.py [--users 2000] [--engines sqlite,postgres]
        [--requests 2000] [--warm-up 300] [--in-flight 16] [--tree DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def load_bench(tree: Path) -> ModuleType:
    """``bench/radius_load.py`` of ``tree`` with ``tree`` first on the import path."""
    sys.path.insert(0, str(tree))
    for name in [n for n in sys.modules if n == "mfad" or n.startswith("mfad.")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("radius_load", tree / "bench" / "radius_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["radius_load"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def callgrind_total(path: Path) -> int:
    """The instruction total of one callgrind dump."""
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if found is None:
        raise RuntimeError(f"no total in {path}")
    return int(found.group(1))


def send(bench: ModuleType, port: int, jobs: list[tuple[str, str]], in_flight: int) -> dict[str, Any]:
    """The benchmark's sender, in this process, with a timeout fit for a server under valgrind."""
    import asyncio

    sender = bench.Sender("127.0.0.1", port, [bench.Job(u, p.encode()) for u, p in jobs], in_flight, None,
                          timeout=60.0)
    result: dict[str, Any] = asyncio.run(sender.run())
    return result


def fresh_codes(bench: ModuleType, store: Any, names: list[str]) -> list[tuple[str, str]]:
    """Codes of the next step for ``names`` (users not used before): valid for 60-90 s,
    whatever the server's slowness, and never a replay."""
    step = bench.current_step() + 1
    assert step > store.used_step
    codes = dict(bench.codes_for({n: store.keys[n] for n in names}, step))
    return [(n, codes[n]) for n in names]


def dump_total(work: Path, engine: str, pid: int) -> int:
    """The count of the newest dump (``callgrind_control -d`` numbers them 1, 2, …)."""
    dumps = sorted(work.glob(f"callgrind-{engine}.{pid}.*"), key=lambda d: int(d.suffix[1:]))
    return callgrind_total(dumps[-1])


def control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True, timeout=120)


def measure(bench: ModuleType, store: Any, tree: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port, metrics_port = bench.free_port(), bench.free_port(socket.SOCK_STREAM)
    config = work / f"mfad-{store.engine}.toml"
    config.write_text(bench.config_text(store.url, store.key_file, port, metrics_port, 1))
    out = work / f"callgrind-{store.engine}"
    log = (work / f"mfad-{store.engine}.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
         sys.executable, "-m", "mfad", "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        deadline = time.monotonic() + 600
        while not bench.status_ok(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mfad under valgrind did not start: "
                                   + (work / f"mfad-{store.engine}.log").read_text()[-2000:])
            time.sleep(1.0)
        names = list(store.keys)
        control(process.pid, "-i", "on")  # the warm-up runs instrumented too: its caches are warm
        warm_run = send(bench, port, fresh_codes(bench, store, names[:args.warm_up]), args.in_flight)
        # What the daemon does with no requests (timers: checkpoints, housekeeping), per second.
        control(process.pid, "-z")
        idle_started = time.monotonic()
        time.sleep(args.idle)
        control(process.pid, "-d")
        idle_seconds = time.monotonic() - idle_started
        idle = dump_total(work, store.engine, process.pid)
        runs = []
        elapsed = 0.0
        total = 0
        counted = names[args.warm_up:args.warm_up + args.requests]
        for start in range(0, len(counted), args.chunk):
            jobs = fresh_codes(bench, store, counted[start:start + args.chunk])
            control(process.pid, "-z")
            started = time.monotonic()
            runs.append(send(bench, port, jobs, args.in_flight))
            control(process.pid, "-d")
            elapsed += time.monotonic() - started
            total += dump_total(work, store.engine, process.pid)
        control(process.pid, "-i", "off")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    accepts = sum(r["accepts"] for r in runs)
    others = sum(r["rejects"] + r["others"] + r["timeouts"] + r["bad_replies"] for r in runs)
    idle_rate = idle / idle_seconds
    busy = total - idle_rate * elapsed
    return {"engine": store.engine, "accepts": accepts, "others": others, "warm_accepts": warm_run["accepts"],
            "instructions": total, "idle_per_second": idle_rate, "elapsed": elapsed,
            "per_accept": busy / max(1, accepts), "per_accept_with_idle": total / max(1, accepts)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--engines", type=lambda s: s.split(","), default=["sqlite", "postgres"])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--warm-up", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=250,
                        help="requests per counted run (each gets fresh codes: they must arrive within a minute)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle counting (subtracted)")
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the source tree to measure")
    parser.add_argument("--pg-dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is needed", file=sys.stderr)
        return 2
    if args.users < args.warm_up + args.requests:
        parser.error("--users must cover --warm-up + --requests (one code per user)")
    tree = args.tree.resolve()
    bench = load_bench(tree)
    work = Path(tempfile.mkdtemp(prefix="mfad-cost-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    stores = bench.setup_stores(argparse.Namespace(engines=args.engines, users=args.users, pg_dsn=args.pg_dsn), work)
    try:
        for store in stores:
            result = measure(bench, store, tree, args, work)
            print(f"{tree.name} {result['engine']:8}: {result['per_accept']:,.0f} instructions per accept "
                  f"({result['per_accept_with_idle']:,.0f} with the idle timers' {result['idle_per_second']:,.0f}/s) "
                  f"({result['accepts']} accepts counted, {result['others']} other answers, "
                  f"in flight {args.in_flight})", flush=True)
            if result["others"]:
                # Codes that expired before the server got to them (a machine too slow for
                # --chunk): rejects cost more than accepts, so the figure above is not one.
                print(f"# NOT A FIGURE: {result['others']} answers were not accepts; run again with a "
                      f"smaller --chunk (now {args.chunk})", flush=True)
            print(json.dumps(result), flush=True)
    finally:
        with contextlib.suppress(Exception):
            bench.drop_databases(stores, args.pg_dsn)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
