"""Builds the daemon's outbox sender: the core's ``OutboxSender`` over SMTP."""

from __future__ import annotations

from mfad.config import SmtpSettings
from mfad.core.outbox import MailContent, OutboxSender
from mfad.core.service import Mfa
from mfad.mail.smtp import SmtpMailer

#: The ``[smtp]`` keys a reload applies: the mail server, how to reach it and what the
#: messages say they are from. The codes' and the outbox's own settings live in the core.
RELOADABLE_KEYS = frozenset({"host", "port", "security", "ca_file", "username", "password", "password_file",
                             "sender", "site_name", "timeout_seconds"})


class ReloadableMailer:
    """The SMTP mailer, replaceable by a reload: a message being sent finishes with the
    server it started with; the next one goes to the new one."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._mailer = SmtpMailer(settings)

    async def send(self, content: MailContent) -> None:
        await self._mailer.send(content)

    def prepare(self, settings: SmtpSettings) -> SmtpMailer:
        """The mailer for ``settings`` (raises OSError for an unreadable ``ca_file``)."""
        return SmtpMailer(settings)

    def replace(self, mailer: SmtpMailer) -> None:
        self._mailer = mailer


def outbox_service(mfa: Mfa, settings: SmtpSettings, mailer: ReloadableMailer | None = None) -> OutboxSender:
    """The sender for this process; codes queued here wake it at once, others' within a poll."""
    sender = OutboxSender(store=mfa.store, keyring=mfa.keyring, clock=mfa.clock,
                          mailer=mailer if mailer is not None else ReloadableMailer(settings),
                          settings=settings.outbox, metrics=mfa.email.metrics)
    mfa.email.add_listener(sender.wake)
    sender.add_listener(mfa.email.message_settled)  # an admin's bind answer waits for it (wait_sent)
    return sender
