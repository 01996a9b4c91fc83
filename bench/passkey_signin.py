"""Benchmark of passkey sign-in in the core: the second factor's cost, without transports.

Registers one passkey per user with the tests' software authenticator (not timed). Each
round then, for every user, opens a challenge (first factor vouched for by the caller, so
no argon2) and starts the passkey method (request options, ceremony stored), one at a
time, and has the authenticator sign an assertion (not timed: the browser's and the
key's work); then completes every round's assertions with ``--concurrency`` in flight on
one event loop (parse, every check, signature, counter guard, the committing transaction
with its audit row). Prints the ``start`` rate and latency (one at a time) and the
``complete`` rate at that concurrency: completions/s over the wall time of the round's
completions, and their latency percentiles.

    PYTHONPATH=.:tests/webauthn python bench/passkey_signin.py [--users 500] [--rounds 4]
        [--concurrency 64] [--engine sqlite|postgres] [--dsn postgresql://.../an_empty_database]

SQLite lives in a fresh temporary directory: say which file system that is when quoting
figures (tmpfs makes fsync free). ``--concurrency 1`` measures one completion at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from softauthn import SoftAuthenticator, dumps

from mfad.config import Config, PasswordSettings, StorageSettings, WebauthnSettings
from mfad.core.keyring import Keyring
from mfad.core.model import Method
from mfad.core.service import Mfa
from mfad.core.verification import VOUCHED, Attempt, SignInRequest
from mfad.store import open_store

ORIGIN = "https://login.example.com"
ATTEMPT = Attempt(protocol="bench", source="192.0.2.1")


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="mfad-bench-"))
    url = f"sqlite:///{work}/mfad.db" if args.engine == "sqlite" else args.dsn
    store = await open_store(StorageSettings(url=url))
    await store.migrate()
    config = dataclasses.replace(Config(passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1)),
                                 webauthn=WebauthnSettings(rp_id="example.com", origins=[ORIGIN]))
    mfa = Mfa(settings=config.core, store=store, keyring=Keyring.open(work / "secrets.key"))
    await mfa.start()
    users = []
    for i in range(args.users):
        name = f"user{i:05d}"
        await mfa.users.create(name, None)
        auth = SoftAuthenticator()
        reg = await mfa.webauthn.begin_registration(name, name="bench")
        await mfa.webauthn.complete_registration(name, reg.registration_id, dumps(auth.create(reg.options_json,
                                                                                               ORIGIN)))
        users.append((name, auth))
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.users} users with a passkey ({work})", flush=True)
    start_times: list[float] = []
    complete_times: list[float] = []
    complete_wall = 0.0
    refused = 0
    for _ in range(args.rounds):
        pending: list[tuple[str, str]] = []
        for name, auth in users:
            opened = await mfa.signin.sign_in(SignInRequest(username=name, first_factor=VOUCHED, attempt=ATTEMPT))
            assert opened.challenge_id is not None, opened
            t0 = time.perf_counter()
            options = (await mfa.signin.start_challenge(opened.challenge_id, Method.PASSKEY, ATTEMPT)).shown
            start_times.append(time.perf_counter() - t0)
            pending.append((opened.challenge_id, dumps(auth.get(json.loads(options or "{}"), ORIGIN))))
        gate = asyncio.Semaphore(args.concurrency)

        async def complete(challenge_id: str, assertion: str) -> None:
            nonlocal refused
            async with gate:
                t0 = time.perf_counter()
                result = await mfa.signin.complete(challenge_id, Method.PASSKEY, assertion, ATTEMPT)
                complete_times.append(time.perf_counter() - t0)
            refused += not result.accepted

        began = time.perf_counter()
        await asyncio.gather(*(complete(c, a) for c, a in pending))
        complete_wall += time.perf_counter() - began
    n = len(complete_times)
    print(f"engine={args.engine} sign-ins={n} refused={refused}")
    print(f"start     {len(start_times) / sum(start_times):7.0f}/s  p50 {_pct(start_times, 50):6.2f} ms  "
          f"p99 {_pct(start_times, 99):6.2f} ms  (one at a time)")
    print(f"complete  {n / complete_wall:7.0f}/s  p50 {_pct(complete_times, 50):6.2f} ms  "
          f"p99 {_pct(complete_times, 99):6.2f} ms  ({args.concurrency} in flight)")
    mfa.close()
    await store.aclose()
    if refused:
        raise SystemExit(f"{refused} sign-ins were refused")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parsed = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(parsed))
    else:
        uvloop.run(main(parsed))
