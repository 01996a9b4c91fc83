"""Fixtures for the security-email tests.

``mail_server``      a started :class:`MailServer` (plain SMTP on 127.0.0.1), stopped after.
``cert``             (ca, cert, key) paths made for this test (127.0.0.1 and localhost).
``smtp_for(server)`` SmtpSettings aimed at ``server`` with small, fast outbox timings.
``running_clock``    a clock that starts at ``NOW`` and moves with real time (the outbox's
                     back-off and leases need time to pass; code lifetimes are minutes).
``queued``           ``await queued()`` → the newest outbox message opened with the keyring
                     (the core tests read codes there, without a mail server).
``run_sender``       ``await run_sender(mfa, settings)`` → an OutboxSender running as a task,
                     closed (and awaited) after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from email_peers import MailServer, RunningClock, make_certificate

from mfad.config import SmtpSettings
from mfad.core.keyring import Keyring
from mfad.core.outbox import MailContent, OutboxSender, open_body
from mfad.core.service import Mfa
from mfad.mail.smtp import SmtpMailer


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificate(tmp_path / "tls")


@pytest.fixture
def running_clock(clock: Any) -> RunningClock:
    return RunningClock(clock.now())


@pytest.fixture
def queued(db: Any, keyring: Keyring) -> Callable[[], Awaitable[MailContent]]:
    async def newest() -> MailContent:
        rows = await db.rows("SELECT id, sealed_body FROM email_outbox WHERE sealed_body IS NOT NULL "
                             "ORDER BY id DESC LIMIT 1")
        assert rows, "no queued message"
        return open_body(keyring, rows[0]["sealed_body"], int(rows[0]["id"]))
    return newest


@pytest.fixture
async def run_sender() -> AsyncIterator[Callable[..., Awaitable[OutboxSender]]]:
    running: list[tuple[OutboxSender, asyncio.Task[None]]] = []

    async def start(mfa: Mfa, settings: SmtpSettings, *, owner: str | None = None, wake: bool = True,
                    metrics: Any = None) -> OutboxSender:
        sender = OutboxSender(store=mfa.store, keyring=mfa.keyring, clock=mfa.clock, mailer=SmtpMailer(settings),
                              settings=settings.outbox, owner=owner, metrics=metrics)
        if wake:
            mfa.email.add_listener(sender.wake)
            sender.add_listener(mfa.email.message_settled)
        running.append((sender, asyncio.create_task(sender.run())))
        return sender

    yield start
    for sender, task in running:
        await sender.aclose()
    for sender, task in running:
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
