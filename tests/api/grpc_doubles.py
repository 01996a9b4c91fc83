"""Test doubles for the gRPC transport tests: stub servicers, a token table, certificates.

The stub servicers are NOT mfad's servicers: they answer fixed values so that
these tests exercise only the transport (interceptor, roles, TLS, limits,
health, reflection, shutdown). The real servicers call the core and are
tested end to end elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import Caller, GrpcServer, ServiceBinding, current_caller, session_of
from mfad.api.auth import ADMIN_SERVICE, AUTHENTICATION_SERVICE, ENROLLMENT_SERVICE
from mfad.core.errors import InvalidInput, Unavailable
from mfad.core.model import Role

VALID_CODE = "123456"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    role: Role


@dataclass
class TokenTable:
    """A CallerAuthenticator over a dict; ``delay`` makes every lookup slow."""

    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    delay: float = 0.0
    seen: list[str] = field(default_factory=list)

    async def authenticate(self, token: str) -> TokenRecord | None:
        self.seen.append(token)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.tokens.get(token)


@dataclass
class Observed:
    """What the stub servicers saw; lets tests check what reached servicer code."""

    callers: list[Caller] = field(default_factory=list)
    sessions: list[str | None] = field(default_factory=list)
    slow_entered: asyncio.Event = field(default_factory=asyncio.Event)
    slow_seconds: float = 0.5


class StubAuthentication(pb_grpc.AuthenticationServicer):
    """VerifyCode: VALID_CODE is accepted; some usernames trigger transport cases."""

    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    async def VerifyCode(
        self,
        request: pb.VerifyCodeRequest,
        context: grpc.aio.ServicerContext[pb.VerifyCodeRequest, pb.VerifyCodeResponse],
    ) -> pb.VerifyCodeResponse:
        self._observed.callers.append(current_caller())
        if request.username == "invalid":
            raise InvalidInput("username", "must not contain spaces")
        if request.username == "down":
            raise Unavailable("store at db.internal:5432 unreachable")
        if request.username == "boom":
            raise RuntimeError("secret internals")
        if request.username == "slow":
            self._observed.slow_entered.set()
            await asyncio.sleep(self._observed.slow_seconds)
        ok = request.code == VALID_CODE
        return pb.VerifyCodeResponse(
            outcome=pb.VERIFY_OUTCOME_ACCEPTED if ok else pb.VERIFY_OUTCOME_REFUSED
        )


class StubEnrollment(pb_grpc.EnrollmentServicer):
    """Only ListDevices; every other method keeps the generated (unimplemented) default."""

    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    async def ListDevices(
        self,
        request: pb.ListDevicesRequest,
        context: grpc.aio.ServicerContext[pb.ListDevicesRequest, pb.ListDevicesResponse],
    ) -> pb.ListDevicesResponse:
        self._observed.callers.append(current_caller())
        self._observed.sessions.append(session_of(context))
        return pb.ListDevicesResponse(devices=pb.DeviceList(lockout_risk=True))


class StubAdmin(pb_grpc.AdminServicer):
    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    async def GetPolicy(
        self,
        request: pb.GetPolicyRequest,
        context: grpc.aio.ServicerContext[pb.GetPolicyRequest, pb.GetPolicyResponse],
    ) -> pb.GetPolicyResponse:
        self._observed.callers.append(current_caller())
        return pb.GetPolicyResponse(
            policy=pb.Policy(mfa_required=pb.MFA_REQUIRED_ALL, remember_days=7)
        )


# --- certificates -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pem:
    cert: bytes
    key: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert)
        key.write_bytes(self.key)
        key.chmod(0o600)
        return cert, key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class CertificateAuthority:
    """A throw-away CA that issues server and client certificates (EC P-256)."""

    def __init__(self, cn: str = "mfad test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, *, server: bool) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return _pem(builder.sign(self._key, hashes.SHA256()), key)


# Shared by the transport tests (imported by module name: a 'conftest' import would
# resolve to whichever conftest.py pytest loaded last when several folders run together).
ADMIN_TOKEN = "admin-token-0123456789"
SERVICE_TOKEN = "service-token-0123456789"
PORTAL_TOKEN = "portal-token-0123456789"
SESSION = "user-session-0123456789"

StartServer = Callable[..., Awaitable[GrpcServer]]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def always_ready() -> bool:
    return True


def stub_bindings(observed: Observed) -> list[ServiceBinding]:
    return [
        ServiceBinding(
            AUTHENTICATION_SERVICE,
            lambda s: pb_grpc.add_AuthenticationServicer_to_server(StubAuthentication(observed), s),
        ),
        ServiceBinding(
            ENROLLMENT_SERVICE,
            lambda s: pb_grpc.add_EnrollmentServicer_to_server(StubEnrollment(observed), s),
        ),
        ServiceBinding(
            ADMIN_SERVICE, lambda s: pb_grpc.add_AdminServicer_to_server(StubAdmin(observed), s)
        ),
    ]
