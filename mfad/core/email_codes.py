"""Security email: binding an address and one-time codes mailed to it.

An email code is the lowest-assurance second factor (DESIGN.md §1: level 1):
whoever reads the mailbox can sign in. The policy can disallow it.

Guarantees:
- an address is bound only from the self-service side (never with a
  first-sign-in enrolment session), only when the policy allows ``email``,
  only after the mailed code proves it, and a user holds at most one security
  email (unbind first to change it). The profile email is never used: only the
  bound, confirmed address receives codes;
- a code is ``code_digits`` (6-8) digits from ``secrets``, stored only as an
  HMAC under the secrets key tagged with its key id and bound to its row
  (a stolen database cannot be brute-forced offline), lives ``code_ttl_seconds``
  (≤ 10 min), is accepted once, only for the challenge, binding or one-call
  verification that asked for it, after at most ``code_tries`` tries — each
  try is spent atomically *before* the comparison, so parallel guesses cannot
  exceed it — and the comparison is constant-time;
- a user may be mailed a code only ``resend_seconds`` after the previous one of the
  same purpose (a binding code cannot sign in, so it holds no sign-in code back) and
  at most ``hourly_limit`` an hour of any purpose (``RateLimited`` otherwise); a new code kills
  the previous one and cancels its unsent mail;
- the code's mail is queued in the outbox in the same transaction (see
  ``mfad.core.outbox``); issuing, using and refusing a code are audited there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from email.utils import format_datetime

from mfad.core.settings import EmailCodeSettings
from mfad.core import totp
from mfad.core.addresses import mask_address, normalize_address
from mfad.core.clock import Clock
from mfad.core.devices import MAX_DEVICE_NAME, load_unconfirmed, lockout_risk
from mfad.core.errors import InvalidInput, PermissionDenied, PreconditionFailed, RateLimited
from mfad.core.keyring import Keyring
from mfad.core.model import AuditEvent, Challenge, Device, DeviceId, Method, User
from mfad.core.outbox import (
    CodeCheck,
    CodePurpose,
    CodeRequest,
    Delivery,
    EmailMetrics,
    EmailStore,
    IssueOutcome,
    MailContent,
    NullEmailMetrics,
    PendingEmail,
    mail_message_id,
    seal_body,
)
from mfad.core.policy import PolicyService
from mfad.core.ports import CoreMetrics, DeviceStore, NullMetrics
from mfad.core.verification import Attempt, ChallengeStarted, MethodOutcome, Reason, VerifyContext
from mfad.core.users import UserService

DEFAULT_DEVICE_NAME = "security email"
#: How long an administrator's bind answer waits for the mail server to accept the code.
DELIVERY_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeSent:
    """A code was queued for mailing."""

    masked_address: str
    expires_at: datetime
    #: The earliest time another code may be requested.
    resend_after: datetime
    #: BINDING: the pending device to confirm.
    device: Device | None = None
    lockout_risk: bool = False
    #: The outbox message carrying the code (see ``EmailCodeService.wait_sent``).
    message_id: int | None = None


def new_code(digits: int) -> str:
    return str(secrets.randbelow(10**digits)).zfill(digits)


def _mac_input(code_id: int, code: str) -> bytes:
    return f"email-code:{code_id}:{code}".encode()


def check_code(code: str, digits: int, field: str = "code") -> None:
    totp.check_code_input(code, field)
    if len(code) != digits:
        raise InvalidInput(field, f"must be {digits} ASCII digits")


class EmailCodeStore(EmailStore, DeviceStore, Protocol):
    """The store as the email-code service uses it."""


class EmailCodeService:
    def __init__(self, *, store: EmailCodeStore, keyring: Keyring, clock: Clock, settings: EmailCodeSettings,
                 policy: PolicyService, users: UserService, metrics: EmailMetrics | None = None,
                 core_metrics: CoreMetrics | None = None) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self.settings = settings
        self._policy = policy
        self._users = users
        self.metrics: EmailMetrics = metrics or NullEmailMetrics()
        self._core_metrics = core_metrics or NullMetrics()
        self._listeners: list[Callable[[], None]] = []
        self._settling: dict[int, list[asyncio.Future[None]]] = {}

    def add_listener(self, wake: Callable[[], None]) -> None:
        """Called after each queued message (the in-process sender wakes up)."""
        self._listeners.append(wake)

    def mail_queued(self, kind: str) -> None:
        """A message of ``kind`` was queued (here or by another service): count it, wake the sender."""
        self.metrics.queued(kind)
        for wake in self._listeners:
            wake()

    def message_settled(self, message_id: int) -> None:
        """The sender of this process finished an attempt at ``message_id`` (sent, failed,
        or to be retried): wake whoever waits for it (``wait_sent``)."""
        for waiter in self._settling.pop(message_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    # --- binding ------------------------------------------------------------------------
    async def begin_binding(self, username: str, address: str, attempt: Attempt, *, enrolment: bool = False,
                            actor: str | None = None, name: str = DEFAULT_DEVICE_NAME) -> CodeSent:
        """Create (or refresh) the pending security email and mail it a code.

        ``enrolment`` is True when the caller acts with a first-sign-in enrolment
        session: refused, only passkeys and TOTP may be bound then."""
        if enrolment:
            raise PermissionDenied("a security email can be bound only after signing in, not during "
                                   "first-sign-in enrolment")
        if not name or len(name) > MAX_DEVICE_NAME or not name.isprintable():
            raise InvalidInput("name", f"must be 1 to {MAX_DEVICE_NAME} printable characters")
        clean = normalize_address(address)
        if not (await self._policy.current()).allows(Method.EMAIL):
            raise PermissionDenied("the MFA policy does not allow security emails")
        user = await self._users.get(username)
        now = self._clock.now()
        expires = now + timedelta(seconds=self.settings.code_ttl_seconds)
        sent = await self._issue(user, clean, CodePurpose.BINDING, "", attempt, now, expires, actor=actor,
                                 pending=PendingEmail(address=clean, name=name, expires_at=expires))
        devices = await self._store.load_devices(user.id)
        device = next((d for d in devices if d.method is Method.EMAIL), None)
        return CodeSent(masked_address=sent.masked_address, expires_at=sent.expires_at,
                        resend_after=sent.resend_after, device=device, lockout_risk=lockout_risk(devices),
                        message_id=sent.message_id)

    async def wait_sent(self, sent: CodeSent, within: float = DELIVERY_WAIT_SECONDS) -> bool:
        """True once the mail server accepted ``sent``'s message, waiting at most ``within``
        seconds; False while it is only queued (no sender, the mail server down or slow: a
        failed attempt ends the wait at once) or was not sent at all."""
        if sent.message_id is None:
            return False
        # Woken by this process's sender (``message_settled``) after its attempt; a message
        # another instance sends is looked at once more when ``within`` is over.
        settled = asyncio.get_running_loop().create_future()
        waiters = self._settling.setdefault(sent.message_id, [])
        waiters.append(settled)
        try:
            found = await self._store.outbox_message(sent.message_id)
            if found is not None and found[0] == "queued" and not found[1]:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(within):
                        await settled
                found = await self._store.outbox_message(sent.message_id)
        finally:
            if settled in waiters:
                waiters.remove(settled)
            if not waiters:
                self._settling.pop(sent.message_id, None)
        return found is not None and found[0] == Delivery.SENT.value

    async def confirm_binding(self, username: str, device_id: DeviceId, code: str, attempt: Attempt, *,
                              actor: str | None = None) -> Device:
        """Prove a pending security email with the mailed code. Refusals raise
        PreconditionFailed; the binding stays pending while its code has tries left."""
        check_code(code, self.settings.code_digits)
        user = await self._users.get(username)
        device = await load_unconfirmed(self._store, user, device_id, Method.EMAIL,
                                        confirmed="the security email is already confirmed")
        now = self._clock.now()
        audit = [AuditEvent(event="device_bound", outcome="ok", user_id=user.id, username=user.username,
                            method="email", protocol=attempt.protocol, source=attempt.source, actor=actor,
                            detail=f"device={device.id} address={mask_address(device.email or '')}"),
                 self._code_event(user, "used", CodePurpose.BINDING, attempt, actor=actor)]
        check = await self._store.confirm_email_binding(
            user.id, device.id, now, self._matches(code), audit,
            self._refusal(user, CodePurpose.BINDING, attempt, actor))
        if check is CodeCheck.ACCEPTED:
            confirmed = await self._store.load_device(device.id)
            assert confirmed is not None
            return confirmed
        if check is CodeCheck.WRONG:
            raise PreconditionFailed("the code does not match")
        raise PreconditionFailed("the code expired or was used up: request a new one")

    # --- codes for sign-in ----------------------------------------------------------------
    async def send_challenge_code(self, user: User, device: Device, challenge: Challenge,
                                  attempt: Attempt) -> CodeSent:
        now = self._clock.now()
        expires = min(now + timedelta(seconds=self.settings.code_ttl_seconds), challenge.expires_at)
        return await self._issue(user, device.email or "", CodePurpose.SIGNIN, challenge.id_hash, attempt, now,
                                 expires)

    # --- codes proving an enrolment session (policy ``enrolment_proof = email_code``) ------------
    async def send_enrolment_code(self, user: User, address: str, session_hash: str, attempt: Attempt) -> CodeSent:
        """Mail a code that lets the enrolment session ``session_hash`` go on to bind a first device."""
        now = self._clock.now()
        expires = now + timedelta(seconds=self.settings.code_ttl_seconds)
        return await self._issue(user, address, CodePurpose.ENROLMENT, session_hash, attempt, now, expires)

    async def accept_enrolment_code(self, user: User, session_hash: str, code: str, attempt: Attempt,
                                    audit: Sequence[AuditEvent]) -> CodeCheck:
        """Check a code mailed by :meth:`send_enrolment_code`; a match clears the session's owed
        proof with ``audit``, in one transaction. Malformed input is a wrong code (never an error)."""
        digits = self.settings.code_digits
        if len(code) != digits or not (code.isascii() and code.isdigit()):
            self.dummy_check(code)
            return CodeCheck.WRONG
        purpose = CodePurpose.ENROLMENT
        return await self._store.accept_email_code(
            user.id, purpose, session_hash, self._clock.now(), self._matches(code),
            [self._code_event(user, "used", purpose, attempt), *audit], self._refusal(user, purpose, attempt, None))

    async def accept(self, ctx: VerifyContext, code: str, compared: list[int] | None = None) -> CodeCheck:
        """Check ``code`` for the context's challenge and commit a success with everything the
        sign-in service prepared, atomically. The ids of the codes it was compared with are
        appended to ``compared``. A code is bound to the challenge that mailed it: without a
        challenge there is none to match."""
        p = ctx.pending
        if not p.challenge_hash:
            return CodeCheck.NO_CODE
        purpose = CodePurpose.SIGNIN
        used = self._code_event(ctx.user, "used", purpose, ctx.attempt)
        return await self._store.accept_email_code(
            ctx.user.id, purpose, p.challenge_hash, ctx.now, self._matches(code, compared),
            [*p.audit, used], self._refusal(ctx.user, purpose, ctx.attempt, None), p.remember, p.remember_hash)

    # --- shared ----------------------------------------------------------------------------
    def _matches(self, code: str, compared: list[int] | None = None) -> Callable[[int, str], bool]:
        def matches(code_id: int, tagged: str) -> bool:
            if compared is not None:
                compared.append(code_id)
            return self._keyring.mac_matches(_mac_input(code_id, code), tagged)
        return matches

    def dummy_check(self, code: str) -> None:
        """The work of one comparison, for paths that have no code to compare with."""
        self._keyring.mac_matches(_mac_input(0, code), self._keyring.mac(b"mfad dummy"))

    async def _issue(self, user: User, address: str, purpose: CodePurpose, ref: str, attempt: Attempt,
                     now: datetime, expires: datetime, *, actor: str | None = None,
                     pending: PendingEmail | None = None) -> CodeSent:
        s = self.settings
        code = new_code(s.code_digits)
        masked = mask_address(address)
        req = CodeRequest(user_id=user.id, purpose=purpose, ref=ref, created_at=now, expires_at=expires,
                          tries=s.code_tries, resend_seconds=s.resend_seconds, hourly_limit=s.hourly_limit)

        def mac(code_id: int) -> str:
            return self._keyring.mac(_mac_input(code_id, code))

        def seal(message_id: int, row_ref: str) -> str:
            content = compose(purpose=purpose, code=code, user=user, address=address, attempt=attempt,
                              actor=actor, now=now, expires=expires, settings=s, message_id=message_id)
            return seal_body(self._keyring, content, message_id)

        queued: list[int] = []

        def audit(message_id: int) -> Sequence[AuditEvent]:
            queued.append(message_id)
            events = [self._code_event(user, "queued", purpose, attempt, actor=actor,
                                       detail=f"message={message_id} address={masked}")]
            if pending is not None:
                events.insert(0, AuditEvent(event="device_bind_started", outcome="ok", user_id=user.id,
                                            username=user.username, method="email", protocol=attempt.protocol,
                                            source=attempt.source, actor=actor, detail=f"address={masked}"))
            return events

        def refusal(outcome: IssueOutcome) -> Sequence[AuditEvent]:
            return [self._code_event(user, "refused", purpose, attempt, actor=actor, reason=outcome.value)]

        result = await self._store.issue_email_code(req, mac=mac, seal=seal, audit=audit, refusal_audit=refusal,
                                                    pending=pending)
        if result.outcome is not IssueOutcome.QUEUED:
            self._core_metrics.rate_limited(f"email_{result.outcome.value}")
            wait = max(1, int(((result.retry_at or now) - now).total_seconds()))
            raise RateLimited(f"a code was mailed recently: try again in {wait} s"
                              if result.outcome is IssueOutcome.COOLDOWN
                              else f"too many codes this hour: try again in {wait} s")
        self.mail_queued(purpose.value)
        return CodeSent(masked_address=masked, expires_at=expires,
                        resend_after=now + timedelta(seconds=s.resend_seconds), message_id=queued[-1])

    def _refusal(self, user: User, purpose: CodePurpose, attempt: Attempt,
                 actor: str | None) -> Callable[[CodeCheck, int], Sequence[AuditEvent]]:
        def events(check: CodeCheck, tries_left: int) -> Sequence[AuditEvent]:
            return [self._code_event(user, "refused", purpose, attempt, actor=actor, reason=check.value,
                                     detail=f"tries_left={tries_left}")]
        return events

    @staticmethod
    def _code_event(user: User, outcome: str, purpose: CodePurpose, attempt: Attempt, *, actor: str | None = None,
                    reason: str | None = None, detail: str | None = None) -> AuditEvent:
        return AuditEvent(event="email_code", outcome=outcome, user_id=user.id, username=user.username,
                          method="email", protocol=attempt.protocol, source=attempt.source, reason=reason,
                          actor=actor or attempt.client,
                          detail=f"purpose={purpose.value}" + (f" {detail}" if detail else ""))


def active_email(devices: Sequence[Device]) -> Device | None:
    return next((d for d in devices if d.method is Method.EMAIL and d.is_active and d.email), None)


class EmailVerifier:
    """The sign-in service's plug-in for email codes."""

    method = Method.EMAIL

    def __init__(self, codes: EmailCodeService) -> None:
        self._codes = codes

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        """Mail a code bound to ``challenge``; answers the masked address and the code's
        timing. RateLimited inside the resend cool-down or over the hourly cap."""
        device = active_email(ctx.subject.devices)
        if device is None:
            raise PreconditionFailed("method: email is not offered for this sign-in")
        sent = await self._codes.send_challenge_code(ctx.user, device, challenge, ctx.attempt)
        return ChallengeStarted(method=self.method, shown=sent.masked_address, expires_at=sent.expires_at,
                                resend_after=sent.resend_after)

    async def verify(self, ctx: VerifyContext, code: str) -> MethodOutcome:
        if active_email(ctx.subject.devices) is None or len(code) != self._codes.settings.code_digits:
            self._codes.dummy_check(code)
            return MethodOutcome(accepted=False, reason=Reason.WRONG_CODE, repeat_key=f"{code}@-")
        compared: list[int] = []
        check = await self._codes.accept(ctx, code, compared)
        if check is CodeCheck.ACCEPTED:
            return MethodOutcome(accepted=True, reason=Reason.ACCEPTED)
        if check in (CodeCheck.NO_CODE, CodeCheck.EXPIRED, CodeCheck.USED, CodeCheck.SUPERSEDED, CodeCheck.SPENT):
            self._codes.dummy_check(code)
        reason = {CodeCheck.CHALLENGE_GONE: Reason.REPLAY, CodeCheck.USED: Reason.REPLAY,
                  CodeCheck.EXPIRED: Reason.EXPIRED}.get(check, Reason.WRONG_CODE)
        # Keyed by the codes it met: against a newly mailed code the same digits are a fresh guess.
        return MethodOutcome(accepted=False, reason=reason, repeat_key=f"{code}@{','.join(map(str, compared))}")


# --- the message -------------------------------------------------------------------------------
_PURPOSE_TEXT = {
    CodePurpose.SIGNIN: ("sign-in code", "Enter it to finish signing in."),
    CodePurpose.BINDING: ("code to confirm your security email",
                          "Enter it to confirm this address as the security email of your account."),
    CodePurpose.ENROLMENT: ("code to bind your first MFA device",
                            "Enter it on the sign-in page to go on and bind your first MFA device."),
}


def describe_source(attempt: Attempt, actor: str | None) -> str:
    parts = []
    if attempt.source:
        parts.append(f"from {attempt.source}")
    via = {"radius": "a RADIUS client (VPN, Wi-Fi or network login)", "grpc": "the sign-in service"}.get(
        attempt.protocol, attempt.protocol)
    parts.append(f"through {via}")
    if attempt.client:
        parts.append(f"({attempt.client})")
    if actor:
        parts.append(f"by the administrator tool {actor!r}")
    return " ".join(parts)


def compose(*, purpose: CodePurpose, code: str, user: User, address: str, attempt: Attempt, actor: str | None,
            now: datetime, expires: datetime, settings: EmailCodeSettings, message_id: int) -> MailContent:
    """The message for one code: plain text and HTML, with the code, its lifetime, where the
    request came from and what to do if it was not the user."""
    what, action = _PURPOSE_TEXT[purpose]
    minutes = max(1, round((expires - now).total_seconds() / 60))
    lifetime = f"{minutes} minute{'s' if minutes != 1 else ''}"
    source = describe_source(attempt, actor)
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    if purpose is CodePurpose.BINDING:
        not_you = ("If you did not ask to add this address, ignore this message: the address will not be "
                   "bound without the code. Someone may know your password: change it and tell your "
                   "administrator.")
    else:
        not_you = ("If this was not you, do not enter or share the code: someone knows your password. "
                   "Change it now and tell your administrator.")
    site = settings.site_name
    text = (f"Hello {user.username},\n\n"
            f"your {site} {what} is:\n\n"
            f"    {code}\n\n"
            f"{action} It is valid for {lifetime} and can be used once.\n\n"
            f"The request was made at {when} {source}.\n\n"
            f"{not_you}\n\n"
            f"Nobody from {site} will ever ask you for this code.\n")
    e = html.escape
    body = (f"<!DOCTYPE html><html><body style=\"font-family: sans-serif\">"
            f"<p>Hello {e(user.username)},</p>"
            f"<p>your {e(site)} {e(what)} is:</p>"
            f"<p style=\"font-size: 2em; font-family: monospace; letter-spacing: 0.2em\"><strong>{e(code)}</strong></p>"
            f"<p>{e(action)} It is valid for {e(lifetime)} and can be used once.</p>"
            f"<p>The request was made at {e(when)} {e(source)}.</p>"
            f"<p><strong>{e(not_you)}</strong></p>"
            f"<p>Nobody from {e(site)} will ever ask you for this code.</p>"
            f"</body></html>")
    return MailContent(to=address, subject=f"Your {site} {what}", text=text, html=body,
                       message_id=mail_message_id(settings.sender, message_id), date=format_datetime(now))
