"""Several OS processes on one store: a race for one code, and a kill -9 mid-stream.

The workers are real Python processes (``store_worker.py``) opening the same SQLite
file or PostgreSQL schema as the test, with the same key file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from mfad.core.model import DeviceState, UserId
from mfad.core.ports import AuditFilter

WORKER = Path(__file__).resolve().parent / "store_worker.py"
pytestmark = pytest.mark.slow


async def spawn(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        raise AssertionError(f"worker ended early (rc={await proc.wait()}):\n{err.decode(errors='replace')}")
    return line.decode().rstrip("\n")


def key_file(tmp_path: Path) -> str:
    return str(tmp_path / "keys" / "secrets.key")  # where the ``keyring`` fixture keeps it


async def test_two_processes_racing_with_one_code_accept_it_once(mfa: Any, enrol: Any, store_location: Any,
                                                                 clock: Any, tmp_path: Path, db: Any,
                                                                 child_env: dict[str, str]) -> None:
    """Two OS processes, 25 concurrent verifications each of the same valid code,
    released together → exactly one accepted in total."""
    alice = await enrol("alice")
    code = alice.code(1)
    args = ["race", *store_location.argv(), key_file(tmp_path), clock.now().isoformat(), "alice", code, "25"]
    workers = [await spawn(child_env, *args) for _ in range(2)]
    try:
        for w in workers:
            assert await read_line(w) == "ready"
        for w in workers:  # the barrier: both are connected and waiting; release them together
            assert w.stdin is not None
            w.stdin.write(b"go\n")
        await asyncio.gather(*(w.stdin.drain() for w in workers if w.stdin is not None))
        results = [await read_line(w) for w in workers]
        for w in workers:
            assert await w.wait() == 0
    finally:
        for w in workers:
            if w.returncode is None:
                w.kill()
                await w.wait()
    accepted = [int(r.split()[1]) for r in results]
    assert sum(accepted) == 1, results
    assert await db.scalar("SELECT last_step FROM devices WHERE id = $1", alice.device.id) == alice.step(1)
    assert len(await mfa.audit(AuditFilter(event="verify", outcome="accepted"))) == 1


async def test_kill_9_loses_nothing_that_was_committed(store: Any, mfa: Any, store_location: Any, clock: Any,
                                                       tmp_path: Path, store_opener: Any,
                                                       child_env: dict[str, str]) -> None:
    """A worker binds, confirms, verifies and fails codes, printing each committed result;
    it is killed with SIGKILL mid-stream. Reopened, the store holds every printed
    binding, replay guard (last_step) and failure counter."""
    assert Path(key_file(tmp_path)).exists()  # the worker opens it without creating it
    worker = await spawn(child_env, "stream", *store_location.argv(), key_file(tmp_path), clock.now().isoformat())
    lines: list[str] = []
    try:
        while len(lines) < 60:
            lines.append(await read_line(worker))
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.stdout is not None
        rest = await worker.stdout.read()  # printed before the kill: committed too
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL
    lines += [line for line in rest.decode().split("\n")[:-1]]  # a cut last line proves nothing

    await store.aclose()  # this test's own connections go too; open the database afresh
    reopened = await store_opener()
    assert await reopened.migrate() == []
    bound = verified = failures = 0
    for line in lines:
        kind, username, *values = line.split()
        user = await reopened.load_user_by_name(username)
        assert user is not None, line
        if kind in ("bound", "verified"):
            device = await reopened.load_device(int(values[0]))  # type: ignore[arg-type]
            assert device is not None and device.state is DeviceState.ACTIVE and device.user_id == user.id, line
            assert device.last_step >= int(values[1]), line
            bound += kind == "bound"
            verified += kind == "verified"
        else:
            assert kind == "failure", line
            assert (await reopened.load_limits(UserId(user.id))).total_failures >= int(values[0]), line
            failures += 1
    assert bound >= 10 and verified >= 10 and failures >= 10
    if store_location.engine == "sqlite":
        async with reopened.read() as tx:
            assert [tuple(r) for r in await tx.fetch("PRAGMA integrity_check")] == [("ok",)]
