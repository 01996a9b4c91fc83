"""The email that tells a user a sign-in waits for their approval (docs/approval.md).

Off unless the policy's ``approval_email_notice`` is on. The lowest-assurance helper there
is: the mail names the sign-in (where, when, through which NAS) and links to the Approve
sign-in page; it carries no number, token or link that approves anything — the page still
wants the number the VPN shows and a fresh passkey (or TOTP code).

Guarantees:
- at most one notice per user per ``NOTICE_INTERVAL``, taken by one conditional upsert in
  the store (of racing instances exactly one mails), so a flood of password attempts does
  not flood the mailbox; a refused notice costs nothing and is not an error;
- the notice goes through the outbox (sealed body, leases, retries) in the transaction
  that takes the interval, with its audit row; it expires with the approval it announces
  (a late mail would point at nothing);
- sent only to the user's bound security email (the proven address), never to a profile
  address; a user without one gets no mail.

When a user denies a sign-in and locks their account ("this wasn't me"), the
administrators' address (``[smtp] security_alerts_to``, when set) is mailed too — once per
lock: a user whose account is locked already sends no second mail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from mfad.core.addresses import mask_address
from mfad.core.approval import ApprovalMetrics, ApprovalService, ApprovalServiceStore, ApprovalVerifier
from mfad.core.approval_records import ApprovalStore
from mfad.core.approval_waits import ApprovalWaiters
from mfad.core.clock import Clock
from mfad.core.email_codes import EmailCodeService, active_email
from mfad.core.keyring import Keyring
from mfad.core.model import AuditEvent, Challenge, Method, User
from mfad.core.outbox import MailContent, paragraphs_mail, seal_body
from mfad.core.policy import PolicyService
from mfad.core.ports import ApprovalNotice, ApprovalNoticeStore, SignInStore
from mfad.core.signin import SignInService
from mfad.core.verification import Attempt, ChallengeStarted, VerifyContext

#: A mail to the administrators about a locked account is news for a day.
REPORT_TTL = timedelta(days=1)
#: One mail per user per quarter of an hour: enough to say "look at the page", too few for
#: prompt bombing to fill a mailbox (the page shows the newest approval anyway).
NOTICE_INTERVAL = timedelta(minutes=15)


class NoticeStore(ApprovalStore, ApprovalNoticeStore, Protocol):
    """The store as the noticing verifier uses it."""


class NoticingApprovalVerifier(ApprovalVerifier):
    """The ``approval`` method, which also mails the user that it waits (when the policy says so)."""

    def __init__(self, store: NoticeStore, metrics: ApprovalMetrics, *, keyring: Keyring, email: EmailCodeService,
                 approve_url: str | None) -> None:
        super().__init__(store, metrics)
        self._notices = store
        self._keyring = keyring
        self._email = email
        self._approve_url = approve_url

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        started = await super().start(ctx, challenge)
        device = active_email(ctx.subject.devices)
        if ctx.policy.approval_email_notice and self._approve_url and device is not None and device.email:
            notice = self._notice(ctx, challenge, device.email)
            if await self._notices.queue_approval_notice(ctx.user.id, ctx.now, ctx.now - NOTICE_INTERVAL,
                                                         notice) is not None:
                self._email.mail_queued("approval_notice")
        return started

    def _notice(self, ctx: VerifyContext, challenge: Challenge, address: str) -> ApprovalNotice:
        assert self._approve_url is not None
        user, attempt, now, page = ctx.user, ctx.attempt, ctx.now, self._approve_url
        source = challenge.source or attempt.source
        settings = self._email.settings

        def seal(message_id: int) -> str:
            content = compose_approval_notice(user=user, address=address, attempt=attempt, source=source, now=now,
                                              page=page, site=settings.site_name, sender=settings.sender,
                                              message_id=message_id)
            return seal_body(self._keyring, content, message_id)

        def audit(message_id: int) -> list[AuditEvent]:
            return [AuditEvent(event="approval_notice", outcome="queued", user_id=user.id, username=user.username,
                               method=Method.APPROVAL.value, protocol=attempt.protocol, source=attempt.source,
                               actor=attempt.client, detail=f"message={message_id} address={mask_address(address)}")]

        return ApprovalNotice(seal=seal, expires_at=challenge.expires_at, audit=audit)


class ReportStore(ApprovalServiceStore, ApprovalNoticeStore, SignInStore, Protocol):
    """The store as the reporting approval service uses it."""


class ReportingApprovalService(ApprovalService):
    """The approval service, which also mails the administrators when a user locks their
    account after denying a sign-in (``security_alerts_to`` in the email settings)."""

    def __init__(self, *, store: ReportStore, clock: Clock, signin: SignInService, metrics: ApprovalMetrics,
                 waiters: ApprovalWaiters, policy: PolicyService | None, keyring: Keyring,
                 email: EmailCodeService) -> None:
        super().__init__(store=store, clock=clock, signin=signin, metrics=metrics, waiters=waiters, policy=policy)
        self._reports = store
        self._now = clock.now
        self._keyring = keyring
        self._email = email

    async def report(self, user: User, attempt: Attempt) -> None:
        address = self._email.settings.security_alerts_to
        was_locked = (await self._reports.load_limits(user.id)).hard_locked
        await super().report(user, attempt)
        if not address or was_locked:
            return
        now, settings = self._now(), self._email.settings

        def seal(message_id: int) -> str:
            return seal_body(self._keyring, compose_report(user=user, address=address, attempt=attempt, now=now,
                                                           site=settings.site_name, sender=settings.sender,
                                                           message_id=message_id), message_id)

        def audit(message_id: int) -> list[AuditEvent]:
            return [AuditEvent(event="approval_reported_notice", outcome="queued", user_id=user.id,
                               username=user.username, method=Method.APPROVAL.value, protocol=attempt.protocol,
                               source=attempt.source, actor=attempt.client,
                               detail=f"message={message_id} address={mask_address(address)}")]

        await self._reports.queue_notice(user.id, now, ApprovalNotice(seal=seal, expires_at=now + REPORT_TTL,
                                                                       audit=audit))
        self._email.mail_queued("approval_reported")


def compose_report(*, user: User, address: str, attempt: Attempt, now: datetime, site: str, sender: str,
                   message_id: int) -> MailContent:
    """The administrators' mail: who locked their account, when, what to do."""
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"The {site} user {user.username} denied a sign-in they did not start and locked their account "
             f"at {when}.",
             "Someone who knows their password may be trying to sign in. The audit log names the NAS and the "
             f"source: mfactl audit tail --user {user.username} --event approval",
             f"Have the user change their password, then unlock the account: mfactl lockout reset {user.username}"]
    return paragraphs_mail(to=address, subject=f"{site}: {user.username} locked their account after a sign-in "
                                               "they did not start",
                           paragraphs=lines, sender=sender, message_id=message_id, now=now)


def compose_approval_notice(*, user: User, address: str, attempt: Attempt, source: str | None, now: datetime,
                            page: str, site: str, sender: str, message_id: int) -> MailContent:
    """The mail: which sign-in waits, where to look at it, what to do if it is not the user's."""
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    through = f" through {attempt.client}" if attempt.client else ""
    origin = f" from {source}" if source else ""
    lines = [f"Hello {user.username},",
             f"a sign-in to {site}{through}{origin} at {when} is waiting for your approval.",
             f"If it is you, open {page} and choose the number your VPN shows. This message cannot approve it.",
             "If it is not you, open the same page and choose \"Deny — this wasn't me\": someone may know "
             "your password."]
    return paragraphs_mail(to=address, subject=f"A {site} sign-in is waiting for your approval", paragraphs=lines,
                           sender=sender, message_id=message_id, now=now)
