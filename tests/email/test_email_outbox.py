"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1), over both engines.

Codes are issued through the core and read back from the messages the server received.
The clock runs with real time here: back-off and leases must pass (code lifetimes are
minutes, far longer than these tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from email_peers import MailServer, RunningClock, smtp_for
from prometheus_client import CollectorRegistry

from mfad.config import Config, SmtpSettings
from mfad.core.keyring import Keyring
from mfad.core.model import DeviceState
from mfad.core.outbox import Delivery, OutboxSender
from mfad.core.ports import AuditFilter, Store
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from mfad.mail.metrics import EmailPrometheusMetrics

PORTAL = Attempt(protocol="grpc", source="198.51.100.7", client="portal")
RunSender = Callable[..., Awaitable[OutboxSender]]


async def core(store: Store, keyring: Keyring, clock: Any, config: Config, smtp: SmtpSettings,
               metrics: Any = None) -> Mfa:
    mfa = Mfa(settings=dataclasses.replace(config, smtp=smtp).core, store=store, keyring=keyring, clock=clock,
              email_metrics=metrics)
    await mfa.start()
    return mfa


async def users(mfa: Mfa, n: int) -> list[str]:
    names = [f"user{i:02d}" for i in range(n)]
    for name in names:
        await mfa.users.create(name, "pw-0123456789")
    return names


async def outbox_states(db: Any) -> list[str]:
    return [r[0] for r in await db.rows("SELECT state FROM email_outbox ORDER BY id")]


async def settled(db: Any, timeout: float = 10.0) -> list[str]:
    """The outbox states once nothing is queued any more (the sender marks a row after the
    server's reply, so a message can arrive a moment before its row says so)."""
    async with asyncio.timeout(timeout):
        while "queued" in (states := await outbox_states(db)):
            await asyncio.sleep(0.02)
    return states


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
async def test_bind_with_the_mailed_code(security: str, store: Store, keyring: Keyring, running_clock: RunningClock,
                                         config: Config, cert: tuple[Path, Path, Path], run_sender: RunSender,
                                         db: Any) -> None:
    ca, server_cert, key = cert
    credentials = ("mfad-relay", "relay-secret-1")
    server = MailServer(security=security, cert=(server_cert, key),
                        credentials=credentials if security != "none" else None)
    await server.start()
    try:
        smtp = smtp_for(server, security=security, ca_file=str(ca),
                        **({"username": credentials[0], "password": credentials[1]} if security != "none" else {}))
        mfa = await core(store, keyring, running_clock, config, smtp)
        await mfa.users.create("alice", "pw-alice-123")
        await run_sender(mfa, smtp)
        sent = await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
        (mail,) = await server.wait_for(1)
        assert mail.envelope_to == ["alice@example.com"] and mail.envelope_from == "mfad@mfad.test"
        assert mail.message["From"] == "mfad test <mfad@mfad.test>" and mail.message["Auto-Submitted"]
        assert mail.code in mail.html and "valid for 5 minutes" in mail.text and "198.51.100.7" in mail.text
        if security != "none":
            assert server.auth_attempts == ["mfad-relay"]
        device = await mfa.email.confirm_binding("alice", sent.device.id, mail.code, PORTAL)
        assert device.state is DeviceState.ACTIVE
        # Sent: the sealed body is gone, the audit says so.
        assert await settled(db) == ["sent"]
        assert await db.scalar("SELECT sealed_body FROM email_outbox") is None
        assert [r.event.outcome for r in await mfa.audit(AuditFilter(event="email_code", outcome="sent"))] == ["sent"]
    finally:
        await server.stop()


async def test_starttls_with_an_untrusted_certificate_is_retried_not_sent_in_clear(
        store: Store, keyring: Keyring, running_clock: RunningClock, config: Config,
        cert: tuple[Path, Path, Path], run_sender: RunSender, db: Any) -> None:
    _, server_cert, key = cert
    server = MailServer(security="starttls", cert=(server_cert, key))
    await server.start()
    try:
        smtp = smtp_for(server, security="starttls")  # system CAs only: the test CA is unknown
        mfa = await core(store, keyring, running_clock, config, smtp)
        await mfa.users.create("alice", "pw-alice-123")
        await run_sender(mfa, smtp)
        await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
        async with asyncio.timeout(10):
            while not await db.scalar("SELECT attempts FROM email_outbox") >= 2:
                await asyncio.sleep(0.05)
        assert server.received == []
        assert await outbox_states(db) == ["queued"]
        assert "CERTIFICATE_VERIFY_FAILED" in await db.scalar("SELECT last_error FROM email_outbox")
    finally:
        await server.stop()


async def test_mail_server_down_codes_queued_then_each_delivered_once_across_a_restart(
        store: Store, store_opener: Any, keyring: Keyring, running_clock: RunningClock, config: Config,
        run_sender: RunSender, db: Any) -> None:
    server = MailServer()  # not started: the mail server is down
    smtp = smtp_for(server)
    mfa = await core(store, keyring, running_clock, config, smtp)
    names = await users(mfa, 6)
    first = await run_sender(mfa, smtp, owner="first")
    for name in names:
        sent = await mfa.email.begin_binding(name, f"{name}@example.com", PORTAL)
        assert sent.masked_address == "u***@example.com"  # issued although nothing can be mailed
    async with asyncio.timeout(10):
        while await db.scalar("SELECT min(attempts) FROM email_outbox") < 2:
            await asyncio.sleep(0.05)
    assert await outbox_states(db) == ["queued"] * 6
    await first.aclose()  # "restart": the first process goes away with everything queued

    await server.start()
    try:
        second_store = await store_opener()
        second = await core(second_store, keyring, running_clock, config, smtp)
        await run_sender(second, smtp, owner="second")
        received = await server.wait_for(6)
        await asyncio.sleep(0.3)  # anything extra would arrive now
        assert sorted(r.envelope_to[0] for r in server.received) == sorted(f"{n}@example.com" for n in names)
        assert len(received) == 6
        assert await settled(db) == ["sent"] * 6
        # Every mailed code confirms its binding.
        for r in server.received:
            name = r.envelope_to[0].partition("@")[0]
            device = next(d for d in (await second.devices.list(name)).devices)
            await second.email.confirm_binding(name, device.id, r.code, PORTAL)
    finally:
        await server.stop()


async def test_two_instances_share_the_outbox_and_send_each_message_once(
        store: Store, store_opener: Any, keyring: Keyring, running_clock: RunningClock, config: Config,
        run_sender: RunSender, db: Any) -> None:
    server = MailServer()
    smtp = smtp_for(server)
    one = await core(store, keyring, running_clock, config, smtp)
    two = await core(await store_opener(), keyring, running_clock, config, smtp)
    names = await users(one, 30)
    for i, name in enumerate(names):  # queued by both instances while the server is down
        await (one if i % 2 else two).email.begin_binding(name, f"{name}@example.com", PORTAL)
    await server.start()
    try:
        await run_sender(one, smtp, owner="one")
        await run_sender(two, smtp, owner="two")
        await server.wait_for(30)
        await asyncio.sleep(0.5)
        recipients = [r.envelope_to[0] for r in server.received]
        assert len(recipients) == 30 and len(set(recipients)) == 30
        assert await settled(db) == ["sent"] * 30
    finally:
        await server.stop()


async def test_a_dead_senders_claim_lapses_and_another_sends(
        store: Store, keyring: Keyring, running_clock: RunningClock, config: Config, run_sender: RunSender,
        mail_server: MailServer, db: Any) -> None:
    smtp = smtp_for(mail_server)
    mfa = await core(store, keyring, running_clock, config, smtp)
    await mfa.users.create("alice", "pw-alice-123")
    await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
    now = running_clock.now()
    # A sender claims the message and dies before settling it.
    claimed = await store.claim_outbox(now, now + timedelta(seconds=1), "dead", 10)
    assert len(claimed) == 1
    assert await store.claim_outbox(now, now, "other", 10) == []  # held: nobody else takes it
    await run_sender(mfa, smtp, owner="alive")
    await mail_server.wait_for(1, timeout=5)
    assert await settled(db) == ["sent"] and len(mail_server.received) == 1
    # The dead sender cannot settle a row it no longer holds.
    assert not await store.finish_outbox(claimed[0].id, "dead", running_clock.now(), Delivery.SENT)


@pytest.mark.parametrize("reply, outcome", [("550 5.1.1 No such user", "failed"),
                                            ("451 4.3.0 Try again later", "queued")])
async def test_permanent_and_temporary_refusals(reply: str, outcome: str, store: Store, keyring: Keyring,
                                                running_clock: RunningClock, config: Config, run_sender: RunSender,
                                                mail_server: MailServer, db: Any) -> None:
    smtp = smtp_for(mail_server)
    registry = CollectorRegistry()
    metrics = EmailPrometheusMetrics(registry)
    mfa = await core(store, keyring, running_clock, config, smtp, metrics)
    await mfa.users.create("alice", "pw-alice-123")
    mail_server.handler.rcpt_reply = reply
    await run_sender(mfa, smtp, metrics=metrics)
    await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
    async with asyncio.timeout(10):
        while await db.scalar("SELECT attempts FROM email_outbox") < (1 if outcome == "failed" else 3):
            await asyncio.sleep(0.05)
        while outcome == "failed" and await db.scalar("SELECT state FROM email_outbox") == "queued":
            await asyncio.sleep(0.05)
        # The sender counts the failure once its row is written: a moment after the state reads "failed".
        while outcome == "failed" and not registry.get_sample_value("mfad_email_failed_total", {"reason": "permanent"}):
            await asyncio.sleep(0.05)
    assert await outbox_states(db) == [outcome]
    assert reply[:3] in await db.scalar("SELECT last_error FROM email_outbox")
    assert registry.get_sample_value("mfad_email_queued_total", {"purpose": "binding"}) == 1
    if outcome == "failed":
        assert await db.scalar("SELECT sealed_body FROM email_outbox") is None
        assert registry.get_sample_value("mfad_email_failed_total", {"reason": "permanent"}) == 1
        return
    assert registry.get_sample_value("mfad_email_failed_total", {"reason": "temporary"}) >= 2
    mail_server.handler.rcpt_reply = None  # the server recovers: the retry delivers
    await mail_server.wait_for(1)
    await asyncio.sleep(0.2)
    assert await settled(db) == ["sent"] and len(mail_server.received) == 1
    assert registry.get_sample_value("mfad_email_sent_total") == 1
    assert registry.get_sample_value("mfad_email_send_duration_seconds_count") == 1
    assert registry.get_sample_value("mfad_email_outbox_depth") == 0


async def test_a_message_whose_code_expired_is_dropped_not_sent(
        store: Store, keyring: Keyring, running_clock: RunningClock, config: Config, run_sender: RunSender,
        mail_server: MailServer, db: Any) -> None:
    smtp = smtp_for(mail_server)
    mfa = await core(store, keyring, running_clock, config, smtp)
    await mfa.users.create("alice", "pw-alice-123")
    await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
    running_clock.advance(301)
    await run_sender(mfa, smtp)
    async with asyncio.timeout(10):
        while await db.scalar("SELECT state FROM email_outbox") == "queued":
            await asyncio.sleep(0.05)
    assert await outbox_states(db) == ["expired"] and mail_server.received == []
    assert await db.scalar("SELECT sealed_body FROM email_outbox") is None


async def test_wait_sent_is_woken_by_this_process_sender_and_looks_once_at_another_instances(
        store: Store, keyring: Keyring, running_clock: RunningClock, config: Config, run_sender: RunSender,
        db: Any) -> None:
    server = MailServer()
    await server.start()
    try:
        smtp = smtp_for(server)
        mfa = await core(store, keyring, running_clock, config, smtp)
        await mfa.users.create("alice", "pw-alice-123")
        await mfa.users.create("bob", "pw-bob-1234567")
        await run_sender(mfa, smtp)
        sent = await mfa.email.begin_binding("alice", "alice@example.com", PORTAL)
        async with asyncio.timeout(10):  # far below `within`: the sender's settlement wakes the wait
            assert await mfa.email.wait_sent(sent, within=600.0)

        # A message another instance sends (this one's sender finds it within a poll): nothing
        # wakes the waiting instance, which looks once when `within` is over — and finds it sent.
        waiting = await core(store, keyring, running_clock, config, smtp)
        sent = await waiting.email.begin_binding("bob", "bob@example.com", PORTAL)
        assert await waiting.email.wait_sent(sent, within=3.0)
        assert len(await server.wait_for(2)) == 2
    finally:
        await server.stop()
