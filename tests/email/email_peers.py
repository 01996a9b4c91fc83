"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1, in the test's event loop.

``MailServer`` can be stopped and started again on the same port (the "mail server
is down" cases), speaks STARTTLS or implicit TLS with a certificate made here, can
require AUTH, and can answer RCPT with a chosen reply (4xx/5xx faults a real server
produces too). Every accepted message is kept, parsed, in ``received``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import time
import warnings
import email
import email.policy
import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from loopback import free_port  # noqa: F401  (also for this module's importers)

from mfad.config import SmtpSettings
from mfad.core.outbox import MailContent

CODE_LINE = re.compile(r"^ {4}(\d{6,8})$", re.MULTILINE)


@dataclass
class Received:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())

    @property
    def code(self) -> str:
        found = CODE_LINE.search(self.text.replace("\r", ""))
        assert found is not None, self.text
        return found.group(1)


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    #: When set, every RCPT is answered with it ("451 4.3.0 try later", "550 5.1.1 no such user").
    rcpt_reply: str | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        self.arrived.set()
        return "250 Message accepted for delivery"


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it: (ca, cert, key)."""
    now = _dt.datetime.now(_dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfad test mail CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
          .not_valid_after(now + _dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


class MailServer:
    """aiosmtpd on 127.0.0.1:``port``: ``security`` none | starttls | tls; optional AUTH."""

    def __init__(self, *, port: int | None = None, security: str = "none", cert: tuple[Path, Path] | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.security = security
        self.credentials = credentials
        self.handler = _Handler()
        self.auth_attempts: list[str] = []
        self._tls: ssl.SSLContext | None = None
        if security != "none":
            assert cert is not None
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(str(cert[0]), str(cert[1]))
        self._server: asyncio.base_events.Server | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.auth_attempts.append(auth_data.login.decode())
        ok = self.credentials is not None and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        return AuthResult(success=ok)

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {"hostname": "mail.test", "ident": "mfad-test-smtp"}
        if self.security == "starttls":
            kwargs.update(tls_context=self._tls, require_starttls=True)
        if self.credentials is not None:
            # With implicit TLS the whole connection is encrypted, but aiosmtpd only knows about
            # STARTTLS: it would hide AUTH unless told TLS is not required on top.
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.security == "starttls")
        with warnings.catch_warnings():
            # "AUTH without TLS" warning: not so here, the socket itself is TLS (implicit TLS).
            warnings.simplefilter("ignore")
            return SMTP(self.handler, **kwargs)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", self.port, ssl=self._tls if self.security == "tls" else None,
            reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Until at least ``count`` messages arrived (then a short pause catches extras)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.handler.arrived.clear()
                await self.handler.arrived.wait()
        return self.received


class RunningClock:
    """Starts at ``start`` and moves with the monotonic clock; ``advance`` jumps ahead."""

    def __init__(self, start: _dt.datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> _dt.datetime:
        return self._start + _dt.timedelta(seconds=time.monotonic() - self._t0 + self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds


def smtp_for(server: MailServer, **overrides: Any) -> SmtpSettings:
    base = SmtpSettings(host="127.0.0.1", port=server.port, security="none", sender="mfad@mfad.test",
                        site_name="mfad test", timeout_seconds=2.0, lease_seconds=7.0, poll_seconds=0.05,
                        retry_initial_seconds=0.05, retry_max_seconds=0.2)
    return dataclasses.replace(base, **overrides)


def code_of(content: MailContent) -> str:
    for line in content.text.splitlines():
        if line.startswith("    ") and line.strip().isdigit():
            return line.strip()
    raise AssertionError(content.text)
