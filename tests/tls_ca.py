"""A throw-away certificate authority for the tests that need TLS peers (gRPC, RadSec)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCA:
    """A throw-away CA (EC P-256) issuing server and client certificates into files."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path, cn: str = "mfad e2e CA", *, not_after: dt.datetime | None = None) -> None:
        """``not_after``: when the CA certificate ends (default: a day from now; a past time
        makes an expired CA, valid for the 30 days before it)."""
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = min(dt.datetime.now(dt.UTC), not_after - dt.timedelta(days=30)) if not_after else dt.datetime.now(dt.UTC)
        self._cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                      .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(now - dt.timedelta(minutes=5))
                      .not_valid_after(not_after or now + dt.timedelta(days=1))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                      .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                   key_encipherment=False, data_encipherment=False,
                                                   key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                   encipher_only=False, decipher_only=False), critical=True)
                      .sign(self._key, hashes.SHA256()))
        self.cert_path = directory / f"{cn.replace(' ', '_')}.crt"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool, not_after: dt.datetime | None = None) -> tuple[Path, Path]:
        """A certificate and its key (0600) in ``cn.crt`` and ``cn.key``; ``not_after`` as for the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = min(dt.datetime.now(dt.UTC), not_after - dt.timedelta(days=30)) if not_after else dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self._cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(not_after or now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{cn}.crt", self.directory / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return cert_path, key_path
