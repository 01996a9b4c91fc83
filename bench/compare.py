"""mfad against FreeRADIUS with google-authenticator through PAM, replay refused, in one run.

All on this machine, on loopback, with the same user names, the same number of requests in
flight and ``radius_load.py``'s sender, start-up and CPU accounting:

1. FreeRADIUS PAP from a users file (``-f``, its thread pool): the floor, no second factor.
2. FreeRADIUS ``rlm_pam`` with ``pam_google_authenticator`` (libpam-google-authenticator):
   a secret file per user in a temporary directory (``secret=DIR/${USER} user=root``, no
   ``nullok``), holding the mfad SQLite store's TOTP secret of that user with
   ``TOTP_AUTH`` and ``DISALLOW_REUSE``: a code is accepted once, like mfad's replay guard.
   The module rewrites the user's file on every sign-in, and FreeRADIUS calls ``rlm_pam``
   one request at a time (the module is declared thread-unsafe). Linux-PAM reads services
   only from ``/etc/pam.d``: a service ``mfad-bench-<random>`` is written there for the run
   and removed after it (so the script runs as root).
3. ``mfad serve`` (``otp_only`` client) on SQLite and on PostgreSQL
   (``$MFAD_TEST_POSTGRES_DSN``, a fresh database, dropped afterwards), each store set up
   by ``radius_load.py`` (the same users; each store draws its own secrets).

Every code sent is valid at send time and not yet spent on that server: one request per
user and step. For each server: the maximum rate (closed loop), the CPU its process(es)
used per accept (mfad on PostgreSQL: mfad plus the PostgreSQL backends serving it), then
p50/p99 latency open loop at half that rate. Every answer is checked; anything but an
Access-Accept is counted and printed, and one from FreeRADIUS + google-authenticator or
from an mfad makes that mfad's goal undecided.

With ``--rounds N`` every server is measured N times in turn; the table gives the medians,
the ratios are taken within each round (on a shared machine the load moves in minutes).
Prints one table and whether the goals are met: mfad on SQLite ≥ 20× FreeRADIUS +
google-authenticator's accepts/s, mfad on PostgreSQL ≥ 5×.

    PYTHONPATH=. nice -n 5 .venv/bin/python bench/compare.py [--users 2000] [--rounds 1]
        [--in-flight 64] [--workers 1] [--quiet 0.5] [--timeout 10] [--margin 45] [--keep DIR]

Needs root, ``freeradius`` and ``libpam-google-authenticator`` (``apt-get install
freeradius libpam-google-authenticator``) and a
PostgreSQL server on this machine (its backends' CPU is read from ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import radius_load as load

#: Where Debian and others install PAM modules.
PAM_MODULE_DIRS = ("/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
                   "/lib/security", "/usr/lib/security", "/lib64/security", "/usr/lib64/security")
#: mfad's rate as a multiple of FreeRADIUS + google-authenticator's.
GOALS = {"mfad SQLite": 20.0, "mfad PostgreSQL": 5.0}
FR_GA = "FreeRADIUS + PAM google-authenticator"
FR_PAP = "FreeRADIUS PAP (users file)"


def check_prerequisites() -> None:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (a PAM service is written to /etc/pam.d)")
    if shutil.which("freeradius") is None:
        missing.append("freeradius (apt-get install freeradius)")
    if not any(Path(d, "pam_google_authenticator.so").exists() for d in PAM_MODULE_DIRS):
        missing.append("pam_google_authenticator.so (apt-get install libpam-google-authenticator)")
    if missing:
        raise SystemExit("compare.py needs: " + "; ".join(missing))


def write_secret_files(directory: Path, keys: dict[str, str]) -> None:
    """One google-authenticator file per user: TOTP, ±1 step (its default window, like
    mfad's), each step's code accepted once. Owned by root, 0600 (the module checks)."""
    directory.mkdir(mode=0o700)
    for name, key in keys.items():
        path = directory / name
        path.write_text(f'{key}\n" TOTP_AUTH\n" DISALLOW_REUSE\n')
        path.chmod(0o600)


@contextlib.contextmanager
def pam_service(secret_dir: Path) -> Iterator[str]:
    """A PAM service of the run's own, removed afterwards: its name."""
    name = f"mfad-bench-{secrets.token_hex(4)}"
    path = Path("/etc/pam.d") / name
    path.write_text(f"auth required pam_google_authenticator.so secret={secret_dir}/${{USER}} user=root\n"
                    "account required pam_permit.so\n")
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)


def pam_auth(service: str) -> load.FreeradiusAuth:
    return load.FreeradiusAuth(modules=f"  pam {{\n    pam_auth = {service}\n  }}",
                               authorize="    update control {\n      &Auth-Type := PAM\n    }",
                               authenticate="    Auth-Type PAM {\n      pam\n    }")


def bench_freeradius(name: str, work: Path, users: list[tuple[str, str]], auth: load.FreeradiusAuth,
                     jobs: load.Jobs, args: argparse.Namespace) -> dict[str, Any]:
    with load.freeradius_running(work, users, "-f", auth, name) as (port, process):
        return load.measure(port, jobs, args.in_flight, work, lambda: load.process_cpu(process.pid),
                            timeout=args.timeout, margin=args.margin)


def versions(pg_dsn: str) -> str:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    async def postgres() -> str:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    commit = run("git", "-C", str(load.REPO), "rev-parse", "--short", "HEAD")
    dirty = " (modified)" if run("git", "-C", str(load.REPO), "status", "--porcelain", "--untracked-files=no") else ""
    def package(name: str) -> str:
        return f"{name} {run('dpkg-query', '-W', '-f', '${Version}', name)}"

    return (f"{package('freeradius')}, {package('libpam-google-authenticator')}, "
            f"PostgreSQL {asyncio.run(postgres())}, SQLite {sqlite3.sqlite_version}, "
            f"Python {sys.version.split()[0]}, mfad {commit}{dirty}")


Result = dict[str, Any]


FAILURES = ("rejects", "others", "timeouts", "bad_replies")


def not_accepted(result: Result) -> int:
    return sum(run[k] for run in (result["max"], result["half"]) for k in FAILURES)


def rate(result: Result) -> float:
    return float(result["max"]["accepts"] / result["max"]["elapsed"])


def cpu(result: Result) -> float:
    """Microseconds of CPU per accept, PostgreSQL's backends included."""
    return float(result["max"]["cpu_us"] + result["max"].get("db_cpu_us", 0.0))


def ratios(results: dict[str, list[Result]], label: str, other: str, figure: Callable[[Result], float]) -> list[float]:
    """``label``'s figure over ``other``'s, per round (measured minutes apart, not hours); NaN
    over 0 (CPU time is counted in clock ticks: a run shorter than a few ticks may show none)."""
    return [figure(mine) / figure(theirs) if figure(theirs) else math.nan
            for mine, theirs in zip(results[label], results[other], strict=True)]


def median(values: list[float]) -> float:
    """The median of the figures that are numbers (NaN when none is)."""
    numbers = [v for v in values if not math.isnan(v)]
    return statistics.median(numbers) if numbers else math.nan


def times(values: list[float]) -> str:
    ratio = median(values)
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"


def table(results: dict[str, list[Result]]) -> list[str]:
    def of(label: str, figure: Callable[[Result], float]) -> float:
        return median([figure(result) for result in results[label]])

    header = (f"{'server':40} {'accepts/s':>10} {'CPU/accept':>11} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'not accepted':>14} {'x FR+GA':>8} {'x PAP':>7} {'CPU FR+GA/this':>15}")
    lines = [header, "-" * len(header)]
    for label, runs in results.items():
        sent = sum(r["max"]["sent"] + r["half"]["sent"] for r in runs)
        failed = sum(not_accepted(r) for r in runs)
        lines.append(
            f"{label:40} {of(label, rate):10,.0f} {of(label, cpu):9,.0f}us "
            f"{of(label, lambda r: r['half']['p50_ms']):7.2f} {of(label, lambda r: r['half']['p99_ms']):7.2f} "
            f"{f'{failed} of {sent}':>14} {times(ratios(results, label, FR_GA, rate)):>8} "
            f"{times(ratios(results, label, FR_PAP, rate)):>7} {times(ratios(results, FR_GA, label, cpu)):>15}")
    rounds = len(results[FR_GA])
    lines.append(f"(median of {rounds} round{'s' if rounds > 1 else ''}; ratios per round, then their median; "
                 "p50/p99 at half the maximum rate; CPU of the server's processes per accept at the maximum rate")
    if "mfad PostgreSQL" in results:
        lines[-1] += (f"; mfad PostgreSQL's includes its PostgreSQL backends: mfad "
                      f"{of('mfad PostgreSQL', lambda r: r['max']['cpu_us']):,.0f} us + backends "
                      f"{of('mfad PostgreSQL', lambda r: r['max']['db_cpu_us']):,.0f} us")
    lines[-1] += ")"
    for label, runs in results.items():
        counts = {k: sum(r[run][k] for r in runs for run in ("max", "half")) for k in FAILURES}
        if any(counts.values()):
            lines.append(f"NOT ACCEPTED by {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return lines


def goals(results: dict[str, list[Result]]) -> list[str]:
    lines = []
    for label, goal in GOALS.items():
        invalid = {k: n for k in (label, FR_GA) if (n := sum(not_accepted(r) for r in results[k]))}
        per_round = ratios(results, label, FR_GA, rate)
        ratio = median(per_round)
        verdict = "met" if ratio >= goal else "NOT MET"
        if invalid:
            verdict = "undecided (answers other than Access-Accept: " + ", ".join(
                f"{k} {v}" for k, v in invalid.items()) + ")"
        rounds = f" (rounds: {', '.join(f'{r:.2f}x' for r in per_round)})" if len(per_round) > 1 else ""
        lines.append(f"goal: {label} >= {goal:g}x {FR_GA} (replay refused) in accepts/s: {ratio:.2f}x{rounds}, "
                     f"{verdict}; CPU per accept {median(ratios(results, FR_GA, label, cpu)):.2f}x less")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64, help="outstanding requests at the maximum rate")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds before an unanswered request counts as a timeout (not an accept)")
    parser.add_argument("--margin", type=float, default=45.0,
                        help="seconds the codes of a maximum-rate run stay accepted after it starts (at most 60): "
                             "FreeRADIUS + google-authenticator answers 2,000 users in tens of seconds")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, in turn (the table gives medians)")
    parser.add_argument("--workers", type=int, default=1, help="mfad serve --workers")
    parser.add_argument("--pg-dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN") or load.DEFAULT_PG)
    parser.add_argument("--quiet", type=float, default=0.5, metavar="FRACTION",
                        help="before each measurement wait (up to --quiet-wait s) until at most this much CPU "
                             "is busy; the output says when it was not")
    parser.add_argument("--quiet-wait", type=float, default=15.0)
    parser.add_argument("--log-level", default="info", help="mfad's [logging] level")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directory here")
    parser.set_defaults(engines=["sqlite", "postgres"], py_spy=None, py_spy_native=False)
    args = parser.parse_args()
    check_prerequisites()
    load.QUIET.update(busy=args.quiet, timeout=args.quiet_wait)

    with load.work_directory(args.keep) as work:
        return run(args, work)


def run(args: argparse.Namespace, work: Path) -> int:
    print(f"# {versions(args.pg_dsn)}", flush=True)
    print(f"# {os.cpu_count()} cores, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"{args.users} users, {args.in_flight} in flight, mfad {args.workers} worker(s); work dir {work}",
          flush=True)
    stores = load.setup_stores(args, work)
    results: dict[str, list[Result]] = {}
    try:
        sqlite_store = stores[0]
        pap_users = [(name, f"pw-{name}") for name in sqlite_store.keys]
        secret_dir = work / "google-authenticator"
        write_secret_files(secret_dir, sqlite_store.keys)
        # Only the keys and the spent step are used: nothing is spent in the new files.
        ga_store = load.Store("google-authenticator", "", secret_dir, sqlite_store.keys, used_step=0)
        with pam_service(secret_dir) as service:
            servers: dict[str, Callable[[], Result]] = {
                FR_PAP: lambda: bench_freeradius("freeradius-pap", work, pap_users, load.PAP,
                                                 lambda margin: pap_users, args),
                FR_GA: lambda: bench_freeradius("freeradius-pam", work, [], pam_auth(service),
                                                load.totp_jobs(ga_store), args),
                **{f"mfad {'SQLite' if store.engine == 'sqlite' else 'PostgreSQL'}":
                   functools.partial(load.bench_mfad, store, args.workers, args, work) for store in stores},
            }
            for number in range(1, args.rounds + 1):
                for label, bench in servers.items():
                    results.setdefault(label, []).append(bench())
                    print(f"# round {number}: {label} measured{results[label][-1]['note']}", flush=True)
        print("\n".join(["", *table(results), "", *goals(results)]))
        print(f"# load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    finally:
        load.drop_databases(stores, args.pg_dsn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
