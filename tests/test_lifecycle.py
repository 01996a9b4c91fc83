"""The daemon's services start in order, stop in reverse order even when one fails, and a
second signal ends a shutdown that hangs (mfad.lifecycle)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

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


async def test_serve_exits_1_logging_the_failure_once_after_closing_every_service(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service failing while the daemon runs (a fault injected here: nothing in a healthy
    daemon can be made to raise from ``run()`` on purpose) ends ``mfad serve`` with 1, the
    cause logged once, and every other service closed, last started first."""
    import gc

    from mfad import app
    from mfad.config import load_config

    closed: list[str] = []

    class Failing:
        async def start(self) -> None:
            pass

        async def run(self) -> None:
            raise RuntimeError("the disk caught fire")

        async def aclose(self) -> None:
            closed.append("failing")

    def recorded(service: Any, name: str) -> Any:
        close = service.aclose

        async def aclose() -> None:
            if name not in closed:  # GrpcServer.run closes itself again when it ends
                closed.append(name)
            await close()
        service.aclose = aclose
        return service

    transports: list[Any] = []
    real = app.transport_services

    def with_a_failing_one(*args: Any, **kwargs: Any) -> list[Any]:
        transports.extend(real(*args, **kwargs))
        return [Failing(), *(recorded(s, type(s).__name__) for s in transports)]

    monkeypatch.setattr(app, "transport_services", with_a_failing_one)
    cfg = tmp_path / "mfad.toml"
    cfg.write_text(f"""
[storage]
url = "sqlite:///{tmp_path}/mfad.db"
[secrets]
key_file = "{tmp_path / 'secrets.key'}"
[metrics]
listen = ["127.0.0.1:0"]
[grpc]
listen = ["127.0.0.1:0"]
[radius]
listen = ["127.0.0.1:0"]
accounting_listen = []
[portal]
enabled = false
""")
    try:
        with caplog.at_level("INFO", logger="mfad"):
            async with asyncio.timeout(60):
                code = await app.serve(load_config(cfg, env={}))
    finally:
        gc.unfreeze()
    assert code == 1
    assert closed == ["RadiusService", "GrpcServer", "failing"]
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "failed" in r.getMessage()]
    assert len(failures) == 1 and "the disk caught fire" in failures[0].getMessage()
    assert not any("mfad stopped" in r.getMessage() for r in caplog.records)
    radius = next(s for s in transports if type(s).__name__ == "RadiusService")
    assert radius.server.addresses == []  # its socket let go
