"""A separate OS process working on a test's store, for the multi-process store tests.

    python store_worker.py race   ENGINE URL SCHEMA KEY_FILE NOW USERNAME CODE N
        Opens the store, prints "ready", waits for a line on stdin, then runs N
        concurrent verifications of CODE for USERNAME and prints "accepted K".

    python store_worker.py stream ENGINE URL SCHEMA KEY_FILE NOW
        Until killed: binds and confirms a TOTP device for a new user, verifies a later
        code, records two wrong codes — printing one line per committed result:
            bound USER DEVICE_ID STEP     (the device is active, its last_step is STEP)
            verified USER DEVICE_ID STEP  (last_step is at least STEP)
            failure USER N                (the user's total_failures is at least N)

SCHEMA is "-" for SQLite. NOW is the fixed clock's start (ISO 8601, UTC).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
from datetime import datetime
from pathlib import Path

from mfad.config import Config, PasswordSettings, StorageSettings
from mfad.core import totp
from mfad.core.clock import FixedClock
from mfad.core.keyring import Keyring
from mfad.core.service import Mfa
from mfad.core.signin import SignInService
from mfad.core.verification import VOUCHED, Attempt, SignInRequest, SignInResult
from mfad.store import open_store

ATTEMPT = Attempt(protocol="worker")


async def open_mfa(engine: str, url: str, schema: str, key_file: str, now: str) -> Mfa:
    config = dataclasses.replace(Config(), passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1),
                                 storage=StorageSettings(url=url, timeout_seconds=30.0))
    store = await open_store(config.storage, schema=None if schema == "-" else schema)
    assert store.engine == engine
    mfa = Mfa(settings=config.core, store=store, keyring=Keyring.open(Path(key_file), create=False),
              clock=FixedClock(datetime.fromisoformat(now)))
    await mfa.start()
    return mfa


async def verify_code(signin: SignInService, username: str, code: str, attempt: Attempt) -> SignInResult:
    """A code checked in one call, as gRPC VerifyCode sends it."""
    return await signin.sign_in(SignInRequest(username=username, first_factor=VOUCHED, code=code,
                                              code_required=True, attempt=attempt))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def race(mfa: Mfa, username: str, code: str, n: int) -> None:
    say("ready")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    results = await asyncio.gather(*(verify_code(mfa.signin, username, code, ATTEMPT) for _ in range(n)))
    say(f"accepted {sum(r.accepted for r in results)}")


async def stream(mfa: Mfa) -> None:
    clock = mfa.clock
    assert isinstance(clock, FixedClock)
    for i in range(100_000):
        username = f"stream{i}"
        await mfa.users.create(username, None)
        binding = await mfa.devices.begin_totp(username)
        key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))

        def code(steps: int = 0) -> tuple[str, int]:
            step = totp.step_at(clock.now(), 30) + steps
            return totp.hotp(key, step), step

        confirm, step = code()
        device = await mfa.devices.confirm_totp(username, binding.device.id, confirm)
        say(f"bound {username} {device.id} {step}")
        clock.advance(30)
        later, step = code()
        result = await verify_code(mfa.signin, username, later, ATTEMPT)
        assert result.accepted, result
        say(f"verified {username} {device.id} {step}")
        near = {code(d)[0] for d in range(-3, 4)}
        wrong = [c for c in (f"{n:06d}" for n in range(1000)) if c not in near][:2]
        for n, bad in enumerate(wrong, start=1):
            refused = await verify_code(mfa.signin, username, bad, ATTEMPT)
            assert not refused.accepted, refused
            say(f"failure {username} {n}")


async def main(argv: list[str]) -> None:
    command, engine, url, schema, key_file, now, *rest = argv
    mfa = await open_mfa(engine, url, schema, key_file, now)
    try:
        if command == "race":
            username, code, n = rest
            await race(mfa, username, code, int(n))
        elif command == "stream":
            await stream(mfa)
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        mfa.close()
        await mfa.store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
