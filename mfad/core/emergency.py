"""Emergency sign-in with the security email: the user's way back when the usual device is lost.

A sign-in whose second factor was an email code is an *emergency sign-in*: the session
remembers it (``UserSession.signed_in_with == "email"``). The user's other devices are
then presumed lost; whether such a session may remove them is the policy's
``email_recovery`` (off by default: a mailbox alone is the lowest assurance, so an
administrator removes a lost device unless the operator decided otherwise).

Guarantees:
- every emergency sign-in writes an ``emergency_signin`` audit row, counts in
  ``mfad_emergency_signins_total`` and queues a notice to the security email, in the
  transaction that issues its session;
- a session signed in this way cannot unbind a device unless the policy's
  ``email_recovery`` allows it (``PermissionDenied``, decided in
  :meth:`mfad.core.selfservice.SelfService.unbind`, not only on the page).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from mfad.core.addresses import mask_address
from mfad.core.email_codes import EmailCodeService, active_email, describe_source
from mfad.core.keyring import Keyring
from mfad.core.model import AuditEvent, Device, Method, User
from mfad.core.outbox import MailContent, paragraphs_mail, seal_body
from mfad.core.sessions import SessionNotice
from mfad.core.verification import Attempt

#: A notice that could not be sent within a day is no longer news.
NOTICE_TTL = timedelta(days=1)
#: What an emergency sign-in presumes lost: the devices that are not the mailbox itself.
LOSABLE = frozenset({Method.PASSKEY, Method.TOTP, Method.U2F})
#: The refusal when the policy keeps removal with administrators.
ASK_ADMIN = ("a session signed in with the security email cannot remove devices: "
             "ask an administrator to remove the lost device")


@runtime_checkable
class EmergencyMetrics(Protocol):
    def emergency_signin(self) -> None: ...


class NullEmergencyMetrics:
    def emergency_signin(self) -> None:
        pass


def lost_devices(devices: Sequence[Device]) -> list[Device]:
    """The active devices an emergency sign-in presumes lost."""
    return [d for d in devices if d.is_active and d.method in LOSABLE]


class EmergencySignIns:
    """What an emergency sign-in adds to the session it earns: the audit row, the notice, the count."""

    def __init__(self, *, keyring: Keyring, email: EmailCodeService, metrics: EmergencyMetrics | None = None) -> None:
        self._keyring = keyring
        self._email = email
        self._metrics = metrics or NullEmergencyMetrics()

    def audit(self, user: User, devices: Sequence[Device], attempt: Attempt, email_recovery: bool) -> AuditEvent:
        lost = lost_devices(devices)
        return AuditEvent(event="emergency_signin", outcome="ok", user_id=user.id, username=user.username,
                          method=Method.EMAIL.value, protocol=attempt.protocol, source=attempt.source,
                          actor=attempt.client,
                          detail=f"lost={','.join(str(d.id) for d in lost) or 'none'} "
                                 f"email_recovery={str(email_recovery).lower()}")

    def notice(self, user: User, devices: Sequence[Device], attempt: Attempt, now: datetime) -> SessionNotice | None:
        email = active_email(devices)
        if email is None or email.email is None:
            return None
        address = email.email
        settings = self._email.settings

        def seal(message_id: int) -> str:
            content = compose_notice(user=user, address=address, attempt=attempt, now=now, site=settings.site_name,
                                     sender=settings.sender, message_id=message_id)
            return seal_body(self._keyring, content, message_id)

        def audit(message_id: int) -> list[AuditEvent]:
            return [AuditEvent(event="emergency_notice", outcome="queued", user_id=user.id, username=user.username,
                               method=Method.EMAIL.value, protocol=attempt.protocol, source=attempt.source,
                               actor=attempt.client,
                               detail=f"message={message_id} address={mask_address(address)}")]

        return SessionNotice(user_id=user.id, seal=seal, expires_at=now + NOTICE_TTL, audit=audit)

    def done(self, queued: bool) -> None:
        """After the session was stored: count it and wake the mail sender."""
        self._metrics.emergency_signin()
        if queued:
            self._email.mail_queued("emergency_notice")


def compose_notice(*, user: User, address: str, attempt: Attempt, now: datetime, site: str, sender: str,
                   message_id: int) -> MailContent:
    """The mail saying the security email was used to sign in in place of the usual device."""
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"Hello {user.username},",
             f"your security email was used for an emergency sign-in to {site} at {when} "
             f"{describe_source(attempt, None)}, in place of your usual MFA device.",
             "If you lost that device, remove it on the Security Information page (or ask your administrator) "
             "and bind a new one.",
             "If this was not you, someone has your password and access to this mailbox: change both passwords "
             "and tell your administrator."]
    return paragraphs_mail(to=address, subject=f"Emergency sign-in to {site} with your security email",
                           paragraphs=lines, sender=sender, message_id=message_id, now=now)
