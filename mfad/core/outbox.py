"""The email outbox: codes and the messages that carry them, and the service that delivers them.

Guarantees:
- a message is written to the outbox in the same store transaction as the code
  it carries (and its audit row), so a code is never issued without its mail
  nor mailed without being issued; a failing mail server only delays it;
- the message body, which holds the clear code, is sealed with the keyring
  (AES-256-GCM, associated data bound to the outbox row) and blanked as soon
  as the message is sent, fails for good, expires with its code or is
  superseded by a newer code;
- each message is sent by one instance at a time: a sender claims due rows
  atomically with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write
  lock on SQLite); a sender that dies mid-send leaves its claim to lapse and
  another instance picks the message up. SMTP has no idempotency, so a crash
  between the server's "250 OK" and the store's "sent" can deliver a message
  twice (same Message-ID); nothing can deliver it never;
- temporary failures (4xx replies, connection, TLS and authentication
  problems — these are fixed by an operator, not by giving up) are retried with
  exponential back-off until the code expires; a 5xx reply to the message
  itself is a permanent failure; a message whose code has expired is dropped,
  not sent late.

This module declares what the store, the mail transport and the metrics must
implement; it imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.settings import OutboxSettings
from mfad.core.clock import Clock
from mfad.core.errors import MfadError, SecretsError, Unavailable
from mfad.core.keyring import Keyring, aad_for
from mfad.core.model import AuditEvent, DeviceId, RememberedDevice, UserId

log = logging.getLogger("mfad.email")

#: Delivered and failed rows are kept this long (without body) for operators, then deleted.
KEEP_FINISHED = timedelta(days=1)
#: Codes are kept an hour past their issue for the hourly cap, then deleted.
KEEP_CODES = timedelta(hours=2)
JANITOR_SECONDS = 60.0
CLAIM_BATCH = 20


class CodePurpose(StrEnum):
    """What a code was mailed for; it is accepted only there."""

    SIGNIN = "signin"  # a sign-in challenge (ref = the challenge's id hash)
    BINDING = "binding"  # proving a pending security email (ref = the device id)
    ENROLMENT = "enrolment"  # the proof before binding a first device (ref = the enrolment session's hash)


class IssueOutcome(StrEnum):
    QUEUED = "queued"
    COOLDOWN = "cooldown"  # another code was mailed less than resend_seconds ago
    HOURLY = "hourly_limit"  # hourly_limit codes in the last hour


class CodeCheck(StrEnum):
    ACCEPTED = "accepted"
    WRONG = "wrong_code"
    SPENT = "tries_spent"  # no try left on the code
    EXPIRED = "expired"
    USED = "used"  # already accepted once (a replay)
    SUPERSEDED = "superseded"  # a newer code replaced it
    NO_CODE = "no_code"
    CHALLENGE_GONE = "challenge_gone"  # the code matched but its challenge was spent meanwhile


class Delivery(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequest:
    user_id: UserId
    purpose: CodePurpose
    #: The challenge id hash (SIGNIN) or the device id (BINDING).
    ref: str
    created_at: datetime
    expires_at: datetime
    tries: int
    resend_seconds: int
    hourly_limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingEmail:
    """A security email being bound: created or refreshed with the code (BINDING)."""

    address: str
    name: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueResult:
    outcome: IssueOutcome
    code_id: int | None = None
    message_id: int | None = None
    device_id: DeviceId | None = None
    #: COOLDOWN/HOURLY: when another code may be requested.
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    id: int
    user_id: UserId | None
    sealed_body: str | None
    attempts: int
    created_at: datetime
    expires_at: datetime
    #: The code it carries is still usable (not used, superseded or spent).
    code_live: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MailContent:
    """One message as composed at issue time; sealed in the outbox until sent."""

    to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: str

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MailContent:
        return cls(**json.loads(data))


def mail_message_id(sender: str, message_id: int) -> str:
    """The Message-ID of outbox row ``message_id``, in the sender's domain; its random part keeps
    it unique beyond this store."""
    return f"<mfad.{message_id}.{secrets.token_hex(8)}@{sender.rpartition('@')[2]}>"


def paragraphs_mail(*, to: str, subject: str, paragraphs: Sequence[str], sender: str, message_id: int,
                    now: datetime) -> MailContent:
    """A message of plain ``paragraphs``, as text and as HTML (each paragraph escaped)."""
    text = "\n\n".join(paragraphs) + "\n"
    body = ("<!DOCTYPE html><html><body style=\"font-family: sans-serif\">"
            + "".join(f"<p>{html.escape(line)}</p>" for line in paragraphs) + "</body></html>")
    return MailContent(to=to, subject=subject, text=text, html=body, message_id=mail_message_id(sender, message_id),
                       date=format_datetime(now))


def seal_body(keyring: Keyring, content: MailContent, message_id: int) -> str:
    return keyring.seal(content.to_bytes(), aad_for("email_outbox", "sealed_body", message_id))


def open_body(keyring: Keyring, sealed: str, message_id: int) -> MailContent:
    return MailContent.from_bytes(keyring.open_secret(sealed, aad_for("email_outbox", "sealed_body", message_id)))


class EmailStore(Protocol):
    """The store's part for email codes and the outbox (``mfad.store.email``)."""

    async def issue_email_code(self, req: CodeRequest, *, mac: Callable[[int], str],
                               seal: Callable[[int, str], str], audit: Callable[[int], Sequence[AuditEvent]],
                               refusal_audit: Callable[[IssueOutcome], Sequence[AuditEvent]],
                               pending: PendingEmail | None = None) -> IssueResult:
        """Refuse (cool-down, hourly cap, audited) or, in one transaction: create or refresh
        the pending device (``pending``), supersede the user's live code and cancel its
        unsent mail, insert the code (``mac(code_id)``), the sealed message
        (``seal(message_id, ref)``) and ``audit(message_id)``. PreconditionFailed when
        ``pending`` is given and the user already has an active security email."""
        ...

    async def accept_email_code(self, user_id: UserId, purpose: CodePurpose, ref: str, now: datetime,
                                matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                refusal_audit: Callable[[CodeCheck, int], Sequence[AuditEvent]],
                                remember: RememberedDevice | None = None,
                                remember_hash: str | None = None) -> CodeCheck:
        """Spend one try of the live code for (user, purpose, ref), then compare. A match is
        committed with the challenge consumed (SIGNIN: ``ref``), the user's counters reset,
        the remembered device and ``audit`` — all in one transaction."""
        ...

    async def confirm_email_binding(self, user_id: UserId, device_id: DeviceId, now: datetime,
                                    matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                    refusal_audit: Callable[[CodeCheck, int], Sequence[AuditEvent]]) -> CodeCheck:
        """Like ``accept_email_code`` for a BINDING code; a match activates the device."""
        ...

    async def claim_outbox(self, now: datetime, lease_until: datetime, owner: str, limit: int) -> list[OutboxItem]:
        ...

    async def finish_outbox(self, message_id: int, owner: str, now: datetime, delivery: Delivery, *,
                            next_attempt_at: datetime | None = None, error: str | None = None,
                            audit: Sequence[AuditEvent] = ()) -> bool:
        ...

    async def outbox_message(self, message_id: int) -> tuple[str, bool] | None:
        """A message's state (``queued`` or a Delivery value) and whether an attempt to send
        it has failed; None once it is gone."""
        ...

    async def outbox_depth(self) -> tuple[int, datetime | None]:
        """Queued messages and the creation time of the oldest."""
        ...

    async def delete_old_email(self, codes_before: datetime, finished_before: datetime) -> int:
        ...


class EmailMetrics(Protocol):
    """What the email code service and the sender report; Prometheus outside the core."""

    def queued(self, purpose: str) -> None: ...
    def finished(self, delivery: str, seconds: float | None) -> None: ...
    def outbox(self, depth: int, oldest_age_seconds: float) -> None: ...


class NullEmailMetrics:
    def queued(self, purpose: str) -> None:
        pass

    def finished(self, delivery: str, seconds: float | None) -> None:
        pass

    def outbox(self, depth: int, oldest_age_seconds: float) -> None:
        pass


class DeliveryError(MfadError):
    """The mail transport could not deliver; ``temporary`` says whether to try again."""

    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


class Mailer(Protocol):
    """Delivers one composed message (``mfad.mail.smtp.SmtpMailer``). Raises DeliveryError."""

    async def send(self, content: MailContent) -> None: ...


def backoff_seconds(attempts: int, settings: OutboxSettings) -> float:
    """Exponential back-off after ``attempts`` failed tries, with ±20 % jitter so instances
    that failed together do not retry together."""
    base: float = min(settings.retry_max_seconds, settings.retry_initial_seconds * 2.0 ** min(attempts - 1, 30))
    return base * random.uniform(0.8, 1.2)


class OutboxSender:
    """A service: delivers queued messages until closed; several may share one store."""

    def __init__(self, *, store: EmailStore, keyring: Keyring, clock: Clock, mailer: Mailer,
                 settings: OutboxSettings, metrics: EmailMetrics | None = None, owner: str | None = None,
                 batch: int = CLAIM_BATCH, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._mailer = mailer
        self._settings = settings
        self._metrics = metrics or NullEmailMetrics()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._batch = batch
        self._monotonic = monotonic  # elapsed time: the lease's budget, the janitor's interval
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._last_janitor = 0.0
        self._settled: list[Callable[[int], None]] = []

    def add_listener(self, settled: Callable[[int], None]) -> None:
        """Called with a message's id after each attempt at it is recorded (sent, failed,
        expired, cancelled or to be retried): ``EmailCodeService.message_settled``."""
        self._settled.append(settled)

    def wake(self) -> None:
        """Something was queued in this process: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        """Nothing to bind: the store is open already."""

    async def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self.deliver_due()
                await self._housekeeping()
            except Unavailable as exc:
                log.warning("outbox: store unavailable: %s", exc)
            if claimed >= self._batch or self._stop.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_seconds):
                    await _first(self._wake, self._stop)

    async def aclose(self) -> None:
        self._stop.set()

    async def deliver_due(self) -> int:
        """Claim one batch of due messages and settle each. Returns how many were claimed."""
        now = self._clock.now()
        lease = self._settings.lease_seconds
        items = await self._store.claim_outbox(now, now + timedelta(seconds=lease), self.owner, self._batch)
        # Never start a send the lease might not cover: another instance would take the row over.
        deadline = self._monotonic() + lease - self._settings.timeout_seconds * 3
        for item in items:
            if self._stop.is_set() or self._monotonic() > deadline:
                await self._finish(item, Delivery.RETRY, None, next_at=self._clock.now())
                continue
            await self._deliver(item)
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        now = self._clock.now()
        if now >= item.expires_at:
            await self._finish(item, Delivery.EXPIRED, None, error="the code expired before it could be sent")
            return
        if not item.code_live or item.sealed_body is None:
            await self._finish(item, Delivery.CANCELLED, None, error="the code was used or replaced")
            return
        try:
            content = open_body(self._keyring, item.sealed_body, item.id)
        except (SecretsError, ValueError, TypeError) as exc:
            await self._finish(item, Delivery.FAILED, None, error=f"cannot open the message: {exc}")
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.timeout_seconds * 3):
                await self._mailer.send(content)
        except DeliveryError as exc:
            kind = Delivery.RETRY if exc.temporary else Delivery.FAILED
            await self._finish(item, kind, None, error=exc.reason)
            return
        except TimeoutError:
            await self._finish(item, Delivery.RETRY, None, error="the mail server did not answer in time")
            return
        await self._finish(item, Delivery.SENT, time.perf_counter() - started)

    async def _finish(self, item: OutboxItem, delivery: Delivery, seconds: float | None, *,
                      error: str | None = None, next_at: datetime | None = None) -> None:
        now = self._clock.now()
        if delivery is Delivery.RETRY and next_at is None:
            next_at = now + timedelta(seconds=backoff_seconds(item.attempts, self._settings))
            if next_at >= item.expires_at:
                next_at = item.expires_at  # one last look, which finds it expired
        audit: list[AuditEvent] = []
        if delivery is not Delivery.RETRY:
            audit.append(AuditEvent(event="email_code", outcome=delivery.value, user_id=item.user_id,
                                    reason=error, detail=f"message={item.id} attempts={item.attempts}"))
        if error is not None:
            level = logging.WARNING if delivery in (Delivery.RETRY, Delivery.FAILED) else logging.INFO
            log.log(level, "outbox: message %d %s after %d attempt(s): %s", item.id,
                    "will be retried" if delivery is Delivery.RETRY else delivery.value, item.attempts, error)
        if not await self._store.finish_outbox(item.id, self.owner, now, delivery, next_attempt_at=next_at,
                                               error=error, audit=audit):
            log.warning("outbox: message %d was taken over by another instance (lease too short?)", item.id)
            return
        self._metrics.finished(delivery.value, seconds)
        for settled in self._settled:
            settled(item.id)

    async def _housekeeping(self) -> None:
        depth, oldest = await self._store.outbox_depth()
        now = self._clock.now()
        self._metrics.outbox(depth, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        if self._monotonic() - self._last_janitor > JANITOR_SECONDS:
            self._last_janitor = self._monotonic()
            await self._store.delete_old_email(now - KEEP_CODES, now - KEEP_FINISHED)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
