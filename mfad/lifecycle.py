"""How the daemon's long-running pieces start, run and stop.

Guarantees: services start in order and the daemon says READY only once every
``start()`` returned; a start that fails closes the ones already started. Once
running, the first of a signal, a service failing or a service ending stops them
all, last started first, each ``aclose()`` draining within its own bound — a
failing service never skips the others' shutdown. Each failure is returned once
(the caller logs it and exits 1). A second SIGTERM/SIGINT during shutdown exits
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from typing import Protocol

from mfad.observability import systemd

log = logging.getLogger("mfad")

FORCED_EXIT_CODE = 1


class Service(Protocol):
    async def start(self) -> None:
        """Bind or open what the service needs; raise if it cannot."""

    async def run(self) -> None:
        """Serve until :meth:`aclose`."""

    async def aclose(self) -> None:
        """Stop accepting, drain within the service's own bound, let ``run`` return."""


class Failure(Exception):
    """A service that failed, with what it raised as ``__cause__``."""

    def __init__(self, service: Service, phase: str) -> None:
        super().__init__(f"{type(service).__name__}.{phase}")
        self.service = service
        self.phase = phase


class StopSignals:
    """SIGTERM/SIGINT set ``stop``; the second one ends the process without waiting."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop = asyncio.Event()
        self._loop = loop
        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if not self.stop.is_set():
            log.info("%s: stopping", sig.name)
            self.stop.set()
            return
        log.warning("%s again: exiting without waiting for shutdown", sig.name)
        logging.shutdown()
        os._exit(FORCED_EXIT_CODE)

    def remove(self) -> None:
        for sig in self.SIGNALS:
            self._loop.remove_signal_handler(sig)


async def start_all(services: Sequence[Service]) -> None:
    """Start each service in order; on a failure close the started ones and raise."""
    for i, service in enumerate(services):
        try:
            await service.start()
        except BaseException:
            await close_all(services[:i])
            raise


async def close_all(services: Sequence[Service]) -> list[Failure]:
    """Close the services, last first; one failing to close does not keep the rest open."""
    failures = []
    for service in reversed(services):
        try:
            await service.aclose()
        except Exception as exc:
            failure = Failure(service, "aclose")
            failure.__cause__ = exc
            failures.append(failure)
    return failures


async def run_all(services: Sequence[Service], stop: asyncio.Event) -> list[Failure]:
    """Run started services until ``stop`` is set or one ends, then close them all in order.
    Returns the failures, each once."""
    failures: list[Failure] = []

    async def supervise(service: Service) -> None:
        try:
            await service.run()
        except Exception as exc:  # kept from the TaskGroup, which would cancel the shutdown
            failure = Failure(service, "run")
            failure.__cause__ = exc
            failures.append(failure)
        finally:
            stop.set()

    async with asyncio.TaskGroup() as group:
        for service in services:
            group.create_task(supervise(service))
        systemd.notify("READY=1")
        await stop.wait()
        log.info("mfad stopping")
        systemd.notify("STOPPING=1")
        failures += await close_all(services)
    return failures
