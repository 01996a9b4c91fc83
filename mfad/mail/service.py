"""Builds the daemon's outbox sender: the core's ``OutboxSender`` over SMTP."""

from __future__ import annotations

from mfad.config import SmtpSettings
from mfad.core.outbox import OutboxSender
from mfad.core.service import Mfa
from mfad.mail.smtp import SmtpMailer


def outbox_service(mfa: Mfa, settings: SmtpSettings) -> OutboxSender:
    """The sender for this process; codes queued here wake it at once, others' within a poll."""
    sender = OutboxSender(store=mfa.store, keyring=mfa.keyring, clock=mfa.clock, mailer=SmtpMailer(settings),
                          settings=settings.outbox, metrics=mfa.email.metrics)
    mfa.email.add_listener(sender.wake)
    return sender
