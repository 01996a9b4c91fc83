"""``radius.workers = N``: N daemon processes sharing the RADIUS port (SO_REUSEPORT).

The parent is a supervisor that serves nothing itself. It prepares what must happen
once (the secrets key file, the schema migration, the policy seed) in a short-lived
child, then forks the workers. Every worker runs the whole daemon on the same store,
so a code accepted by one is refused by all the others (the replay guard is in the
store), and RADIUS requests are claimed and replies shared through the store.

Ports that cannot be shared:

- **gRPC** is served by worker 0 only (the other workers get an empty
  ``grpc.listen``): a gRPC call sees one process, and its in-process state (sessions
  are in the store anyway) stays simple.
- **Metrics**: worker ``i`` serves ``/metrics``, ``/healthz`` and ``/readyz`` on the
  configured port **plus i** (9812, 9813, … by default). Prometheus scrapes each
  worker as its own target; sum over them (``sum without (instance)``). Port 0 stays
  0 (a free port each). This was chosen over prometheus-client's multiprocess mode,
  which needs a shared directory, loses the per-process gauges' meaning and cannot
  serve per-worker health.

systemd: the supervisor is the main process. Each worker's ``READY=1`` and
``WATCHDOG=1`` go to a socket of the supervisor's (their ``NOTIFY_SOCKET``); it tells
systemd ``READY=1`` once every worker is ready and passes the watchdog on only while
every worker keeps feeding it. If a worker exits, the supervisor stops the others and
exits non-zero, so that ``Restart=on-failure`` restarts the whole service. SIGTERM and
SIGINT are passed to the workers, which drain as a single daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

from mfad.config import Config, parse_address
from mfad.observability import systemd

log = logging.getLogger("mfad.workers")

STOP_TIMEOUT: Final = 30.0
"""Seconds the workers get to drain after SIGTERM before they are killed."""
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2  # a configuration problem found before anything started

#: Serves one worker: its config (``worker_config``) and its index.
ServeOne = Callable[[Config, int], int]


def worker_config(config: Config, index: int) -> Config:
    """The config of worker ``index``: gRPC only on worker 0, metrics on port + index."""
    metrics = [_shift_port(address, index) for address in config.metrics.listen]
    changes: dict[str, object] = {"metrics": dataclasses.replace(config.metrics, listen=metrics)}
    if index > 0:
        changes["grpc"] = dataclasses.replace(config.grpc, listen=[])
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _shift_port(address: str, index: int) -> str:
    host, port = parse_address(address)
    if port == 0:
        return address
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port + index}"


def run_workers(config: Config, serve_one: ServeOne) -> int:
    """Run ``config.radius.workers`` workers until SIGTERM/SIGINT; the exit code of the service."""
    count = config.radius.workers
    context = multiprocessing.get_context("fork")  # serve_one is a closure: it cannot be pickled
    prepared = context.Process(target=_prepare_child, args=(config,), name="mfad-prepare")
    prepared.start()
    prepared.join()
    if prepared.exitcode != 0:
        log.error("could not prepare the store and keys for the workers (exit %s)", prepared.exitcode)
        return prepared.exitcode if prepared.exitcode and prepared.exitcode > 0 else EXIT_FAILED
    with _Notifications() as notes:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        workers: list[BaseProcess] = []

        def reload(signum: int, frame: object) -> None:
            # Each worker reloads the file itself (what it changes is its own process's).
            log.info("SIGHUP: asking %d worker(s) to reload", len(workers))
            for worker in workers:
                if worker.pid is not None and worker.is_alive():
                    os.kill(worker.pid, signal.SIGHUP)

        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
        try:
            for index in range(count):
                process = context.Process(target=_worker_child, args=(serve_one, worker_config(config, index),
                                                                      index, notes.child_env()),
                                          name=f"mfad-worker-{index}")
                process.start()
                workers.append(process)
            log.info("started %d RADIUS workers (pids %s)", count, ", ".join(str(w.pid) for w in workers))
            failed = _supervise(workers, notes, lambda: stopping)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        systemd.notify("STOPPING=1")
        _stop(workers)
    codes = [w.exitcode for w in workers]
    log.info("workers stopped (exit codes %s)", codes)
    if failed or any(code != 0 for code in codes):
        return EXIT_FAILED
    return 0


def _supervise(workers: list[BaseProcess], notes: _Notifications, stopping: Callable[[], bool]) -> bool:
    """Wait for a signal or a worker's exit; True when a worker ended on its own."""
    ready: set[int] = set()
    fed: dict[int, float] = {}
    watchdog = systemd.watchdog_interval()
    last_fed = time.monotonic()
    announced = False
    while not stopping():
        for pid, message in notes.receive(timeout=0.2):
            if "READY=1" in message:
                ready.add(pid)
            if "WATCHDOG=1" in message:
                fed[pid] = time.monotonic()
        if not announced and len(ready) == len(workers):
            announced = True
            log.info("all %d workers ready", len(workers))
            systemd.notify("READY=1")
        if watchdog is not None and announced:
            now = time.monotonic()
            alive = all(now - fed.get(w.pid or 0, 0.0) < 2 * watchdog for w in workers)
            if alive and now - last_fed >= watchdog:
                systemd.notify("WATCHDOG=1")
                last_fed = now
        dead = [w for w in workers if not w.is_alive()]
        if dead and not stopping():  # a terminal's Ctrl-C reaches the workers too
            for w in dead:
                log.error("worker %s (pid %s) exited with %s: stopping the others", w.name, w.pid, w.exitcode)
            return True
    return False


def _stop(workers: list[BaseProcess]) -> None:
    for w in workers:
        if w.is_alive() and w.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.is_alive():
            log.error("worker %s did not stop within %.0f s: killed", w.name, STOP_TIMEOUT)
            w.kill()
            w.join(5)


def _prepare_child(config: Config) -> None:
    """Key file, schema and policy seed, once, before any worker opens the store."""
    from mfad.app import open_core
    from mfad.core.errors import MfadError

    from mfad.preflight import preflight

    async def prepare() -> list[str]:
        report = await preflight(config)  # before anything is created: a mistyped key file stays an error
        if report.problems:
            return report.problems
        async with open_core(config):
            pass
        return []

    try:
        problems = asyncio.run(prepare())
    except MfadError as exc:
        log.error("%s", exc)
        raise SystemExit(EXIT_FAILED) from None
    for problem in problems:
        log.error("refusing to start: %s", problem)
    if problems:
        raise SystemExit(EXIT_USAGE)


def _worker_child(serve_one: ServeOne, config: Config, index: int, env: dict[str, str]) -> None:
    # The workers answer to the supervisor's signals, not to the terminal's directly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.pop("WATCHDOG_PID", None)
    os.environ.update(env)
    log.info("worker %d serving (pid %d)", index, os.getpid())
    raise SystemExit(serve_one(config, index))


class _Notifications:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET for the workers."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mfad-workers-")
        self.path = str(Path(self._dir.name) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def __enter__(self) -> _Notifications:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._dir.cleanup()

    def child_env(self) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.path}
        usec = os.environ.get("WATCHDOG_USEC")
        if usec and os.environ.get("WATCHDOG_PID") in (None, "", str(os.getpid())):
            env["WATCHDOG_USEC"] = usec
        return env

    def receive(self, timeout: float) -> list[tuple[int, str]]:
        """(sender pid, message) for the notifications that arrive within ``timeout``."""
        out: list[tuple[int, str]] = []
        self._sock.settimeout(timeout)
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except (TimeoutError, BlockingIOError, InterruptedError):
                return out
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 4:
                    pid = int.from_bytes(payload[:4], "little")
            out.append((pid, data.decode(errors="replace")))
            self._sock.settimeout(0)
