"""Delivers composed messages over SMTP with aiosmtplib.

Guarantees:
- ``security = "starttls"`` requires STARTTLS (a server that does not offer it
  is a temporary failure, never a silent fall-back to clear text); ``"tls"``
  is implicit TLS (port 465); ``"none"`` is clear text and, by config
  validation, carries no password off the host. Certificates are verified
  against the system CAs or ``ca_file``;
- every aiosmtplib or socket error is translated here into the core's
  ``DeliveryError``: a 5xx reply to the sender, a recipient or the data is
  permanent; everything else (4xx, connection, timeout, TLS, authentication —
  problems an operator can fix) is temporary;
- the message is plain text with an HTML alternative, its Message-ID fixed at
  queue time (a rare duplicate after a crash carries the same id).
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formataddr

import aiosmtplib

from mfad.config import SmtpSettings
from mfad.core.outbox import DeliveryError, MailContent


def build_message(content: MailContent, settings: SmtpSettings) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((settings.site_name, settings.sender))
    msg["To"] = content.to
    msg["Subject"] = content.subject
    msg["Date"] = content.date
    msg["Message-ID"] = content.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg.set_content(content.text)
    msg.add_alternative(content.html, subtype="html")
    return msg


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._tls: ssl.SSLContext | None = None
        if settings.security != "none":
            self._tls = ssl.create_default_context(cafile=settings.ca_file)

    async def send(self, content: MailContent) -> None:
        s = self._settings
        client = aiosmtplib.SMTP(hostname=s.host, port=s.port, timeout=s.timeout_seconds,
                                 use_tls=s.security == "tls", start_tls=s.security == "starttls",
                                 tls_context=self._tls, username=s.username, password=s.password)
        message = build_message(content, s)
        try:
            await client.connect()
            await client.send_message(message, sender=s.sender, recipients=[content.to])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(f"recipient refused: {exc.recipients[0].code} {exc.recipients[0].message}",
                                temporary=all(400 <= c < 500 for c in codes)) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as exc:
            raise DeliveryError(f"refused: {exc.code} {exc.message}", temporary=exc.code < 500) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"authentication failed: {exc.code} {exc.message}", temporary=True) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise DeliveryError(f"the server does not support what is configured: {exc}", temporary=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{exc.code} {exc.message}", temporary=True) from None
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True) from None
        finally:
            await _hang_up(client)


async def _hang_up(client: aiosmtplib.SMTP) -> None:
    """QUIT politely; once the data was accepted a failing QUIT changes nothing."""
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
