"""The daemon's services start in order, stop in reverse order even when one fails, and a
second signal ends a shutdown that hangs (mfad.lifecycle)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mfad.lifecycle import run_all, start_all

ROOT = Path(__file__).resolve().parent.parent


class Piece:
    """A service that records its life in ``log``; ``fail`` names the phase that raises."""

    def __init__(self, name: str, log: list[str], fail: str | None = None) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.closed = asyncio.Event()

    async def _step(self, phase: str) -> None:
        self.log.append(f"{phase} {self.name}")
        if self.fail == phase:
            raise RuntimeError(f"{self.name} broke in {phase}")

    async def start(self) -> None:
        await self._step("start")

    async def run(self) -> None:
        await self._step("run")
        await self.closed.wait()

    async def aclose(self) -> None:
        self.closed.set()
        await self._step("aclose")


async def test_a_failing_service_stops_the_others_in_reverse_order() -> None:
    log: list[str] = []
    pieces = [Piece("http", log), Piece("outbox", log), Piece("radius", log, fail="run"), Piece("grpc", log)]
    await start_all(pieces)
    async with asyncio.timeout(10):
        failures = await run_all(pieces, asyncio.Event())
    assert [(f.service, f.phase, str(f.__cause__)) for f in failures] == [(pieces[2], "run", "radius broke in run")]
    assert log[-4:] == ["aclose grpc", "aclose radius", "aclose outbox", "aclose http"]


async def test_a_service_failing_to_close_does_not_keep_the_others_open() -> None:
    log: list[str] = []
    pieces = [Piece("first", log), Piece("second", log, fail="aclose"), Piece("third", log)]
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(10):
        failures = await run_all(pieces, stop)
    assert [(f.service, f.phase) for f in failures] == [(pieces[1], "aclose")]
    assert [entry for entry in log if entry.startswith("aclose")] == ["aclose third", "aclose second", "aclose first"]


async def test_a_failed_start_closes_what_had_started() -> None:
    log: list[str] = []
    pieces = [Piece("http", log), Piece("radius", log, fail="start"), Piece("grpc", log)]
    with pytest.raises(RuntimeError, match="radius broke in start"):
        await start_all(pieces)
    assert log == ["start http", "start radius", "aclose http"]


STUCK = textwrap.dedent("""
    import asyncio, logging
    from mfad.lifecycle import StopSignals, run_all

    class Stuck:
        async def start(self): pass
        async def run(self): await asyncio.Event().wait()
        async def aclose(self):
            print("closing", flush=True)
            await asyncio.Event().wait()  # a drain that never ends

    async def main():
        logging.basicConfig(level=logging.INFO)
        signals = StopSignals(asyncio.get_running_loop())
        print("running", flush=True)
        await run_all([Stuck()], signals.stop)

    asyncio.run(main())
""")


def test_a_second_sigterm_ends_a_shutdown_that_hangs() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUCK], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "closing\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 1
        assert "SIGTERM again: exiting without waiting for shutdown" in proc.communicate()[1]
    finally:
        proc.kill()
        proc.wait()
