"""WebAuthn keys and attestation: which public keys are accepted, and whether a
registration's attestation statement is (``attestation = "direct"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from fido2 import cbor
from fido2.attestation.base import Attestation, AttestationResult, AttestationType, AttestationVerifier
from fido2.cose import ES256, CoseKey, UnsupportedKey
from fido2.webauthn import AttestationObject, AuthenticatorData


def usable_key(key: CoseKey, allowed: frozenset[int]) -> bool:
    """A key of an allowed algorithm that can verify a signature (malformed keys raise
    other errors than InvalidSignature)."""
    if isinstance(key, UnsupportedKey) or key.get(3) not in allowed:
        return False
    try:
        key.verify(b"mfad key check", b"\x30\x06\x02\x01\x01\x02\x01\x01")
    except InvalidSignature:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


def cose_key(public_key: bytes) -> CoseKey:
    decoded = cbor.decode(public_key)
    assert isinstance(decoded, Mapping)
    return CoseKey.parse(decoded)


def es256_from_point(point: bytes) -> CoseKey:
    """A COSE ES256 key from an uncompressed P-256 point (a U2F registration's public key)."""
    numbers = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_numbers()
    return ES256({1: 2, 3: ES256.ALGORITHM, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                  -3: numbers.y.to_bytes(32, "big")})


class AttestationRefused(Exception):
    """Raised through fido2 by :class:`AttestationCheck`; the registration turns it into its refusal."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


class _TrustedRoots(AttestationVerifier):
    """Attestation chains must end at one of the configured roots."""

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        super().__init__()
        self._roots = list(roots)

    def ca_lookup(self, attestation_result: AttestationResult, auth_data: AuthenticatorData) -> bytes | None:
        if not attestation_result.trust_path:
            return None
        last = x509.load_der_x509_certificate(attestation_result.trust_path[-1])
        for root in self._roots:
            if root.subject == last.issuer:
                return root.public_bytes(Encoding.DER)
        return None


class AttestationCheck:
    """What fido2 calls to judge a new credential's attestation (only with
    ``attestation = "direct"``): an accepted format, and a chain to a configured root
    when roots are configured."""

    def __init__(self, formats: Sequence[str], roots_file: str | None) -> None:
        self._formats = tuple(formats)
        self._roots: _TrustedRoots | None = None
        if roots_file:
            with open(roots_file, "rb") as f:
                self._roots = _TrustedRoots(x509.load_pem_x509_certificates(f.read()))

    def __call__(self, attestation: AttestationObject, client_data_hash: bytes) -> None:
        fmt = attestation.fmt
        if fmt not in self._formats:
            raise AttestationRefused("attestation_format", f"attestation format {fmt!r} is not accepted here")
        if fmt == "none":
            return
        if self._roots is not None:
            try:
                self._roots.verify_attestation(attestation, client_data_hash)
            except Exception:  # noqa: BLE001
                raise AttestationRefused("attestation_untrusted",
                                         "the authenticator's attestation is not trusted here") from None
            return
        try:
            result = Attestation.for_type(fmt)().verify(attestation.att_stmt, attestation.auth_data,
                                                        client_data_hash)
        except Exception:  # noqa: BLE001
            raise AttestationRefused("attestation_invalid", "the authenticator's attestation is invalid") from None
        if result.attestation_type is AttestationType.NONE:
            raise AttestationRefused("attestation_format", "an attestation statement is required here")
