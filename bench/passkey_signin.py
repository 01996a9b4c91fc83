"""Benchmark of passkey sign-in in the core: the second factor's cost, without transports.

Registers one passkey per user with the tests' software authenticator (not timed), then
for each sign-in opens a challenge (first factor vouched for by the caller, so no
argon2), starts the passkey method (request options, ceremony stored) and completes it
with a fresh assertion (parse, every check, signature, counter guard, the committing
transaction with its audit row). Prints the rate and latency percentiles of the
``start`` and ``complete`` halves, one at a time on one event loop.

    PYTHONPATH=.:tests/webauthn python bench/passkey_signin.py [--users 200] [--rounds 5]
        [--engine sqlite|postgres] [--dsn postgresql://.../an_empty_database]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from softauthn import SoftAuthenticator, dumps

from mfad.config import Config, PasswordSettings, StorageSettings, WebauthnSettings
from mfad.core.keyring import Keyring
from mfad.core.model import Method
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
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
    start_times: list[float] = []
    complete_times: list[float] = []
    began = time.perf_counter()
    for _ in range(args.rounds):
        for name, auth in users:
            opened = await mfa.signin.begin(name, None, ATTEMPT)
            assert opened.challenge_id is not None
            t0 = time.perf_counter()
            options = (await mfa.signin.start_challenge(opened.challenge_id, Method.PASSKEY, ATTEMPT)).shown
            t1 = time.perf_counter()
            assertion = dumps(auth.get(json.loads(options or "{}"), ORIGIN))
            t2 = time.perf_counter()
            result = await mfa.signin.complete(opened.challenge_id, Method.PASSKEY, assertion, ATTEMPT)
            t3 = time.perf_counter()
            assert result.accepted
            start_times.append(t1 - t0)
            complete_times.append(t3 - t2)
    total = time.perf_counter() - began
    n = len(complete_times)
    print(f"engine={args.engine} sign-ins={n} wall={total:.1f}s (incl. begin and the authenticator)")
    for label, values in (("start", start_times), ("complete", complete_times)):
        print(f"{label:9s} {len(values) / sum(values):7.0f}/s  p50 {_pct(values, 50):6.2f} ms  "
              f"p99 {_pct(values, 99):6.2f} ms")
    mfa.close()
    await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main(parser.parse_args()))
