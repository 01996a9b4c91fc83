"""TOTP (RFC 6238) codes: generation, provisioning and verification.

Guarantees:
- only ASCII digit strings of the device's length can match (pyotp would
  NFKC-normalise full-width digits; this module never hands it a code);
- comparisons are constant-time;
- a step at or below the device's last accepted step is reported as a replay,
  never as a match (the store then persists the new step atomically before any
  caller is told "accepted");
- the search window is centred on the remembered drift, capped at ±MAX_DRIFT.

HOTP is computed here with ``hmac.digest`` (≈10× pyotp's per-call cost on the
RADIUS hot path); pyotp builds the provisioning URI, and the RFC 4226/6238
vectors plus ``oathtool`` check that both agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno

from mfad.core.errors import InvalidInput
from mfad.core.model import HashAlgorithm, TotpParams

SECRET_BYTES = 20  # 160 bits, RFC 4226 §4 recommendation and the product rule
MAX_DRIFT = 2  # steps of clock drift we remember for an authenticator
MIN_CODE_DIGITS, MAX_CODE_DIGITS = 6, 8

_DIGESTS = {HashAlgorithm.SHA1: "sha1", HashAlgorithm.SHA256: "sha256", HashAlgorithm.SHA512: "sha512"}
_ASCII_DIGITS = frozenset("0123456789")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def base32_secret(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: HashAlgorithm = HashAlgorithm.SHA1) -> str:
    mac = hmac.digest(key, struct.pack(">Q", counter), _DIGESTS[algorithm])
    offset = mac[-1] & 0x0F
    value = struct.unpack_from(">I", mac, offset)[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def step_at(when: datetime, period: int) -> int:
    return int(when.timestamp()) // period


def check_code_input(code: str, field: str = "code") -> None:
    """Reject what can never be a code, before any state is touched."""
    if not code:
        raise InvalidInput(field, "must not be empty")
    if not MIN_CODE_DIGITS <= len(code) <= MAX_CODE_DIGITS or not _ASCII_DIGITS.issuperset(code):
        raise InvalidInput(field, f"must be {MIN_CODE_DIGITS} to {MAX_CODE_DIGITS} ASCII digits")


@dataclass(frozen=True, slots=True)
class TotpMatch:
    step: int
    drift: int


@dataclass(frozen=True, slots=True)
class TotpReplay:
    step: int


@dataclass(frozen=True, slots=True)
class TotpMismatch:
    pass


TotpResult = TotpMatch | TotpReplay | TotpMismatch


def match_code(key: bytes, code: str, when: datetime, params: TotpParams, *,
               last_step: int, drift: int, window: int) -> TotpResult:
    """Find the step ``code`` belongs to. Every candidate is computed and compared
    (no early exit), so the time taken does not depend on which step matched.

    Codes of different steps can coincide (one in 10^digits per pair): a code that
    matches both a used step and a fresh one is the fresh one's, so the first match
    above ``last_step`` wins and only a code matching used steps alone is a replay."""
    current = step_at(when, params.period)
    centre = current + max(-MAX_DRIFT, min(MAX_DRIFT, drift))
    wanted = code.encode("ascii") if len(code) == params.digits else None
    found: int | None = None
    replayed: int | None = None
    probe = wanted or b"\x00" * params.digits
    for step in range(centre - window, centre + window + 1):
        candidate = hotp(key, step, params.digits, params.algorithm).encode("ascii")
        if hmac.compare_digest(candidate, probe) and wanted is not None:
            if step > last_step:
                if found is None:
                    found = step
            elif replayed is None:
                replayed = step
    if found is not None:
        return TotpMatch(found, max(-MAX_DRIFT, min(MAX_DRIFT, found - current)))
    if replayed is not None:
        return TotpReplay(replayed)
    return TotpMismatch()


def provisioning_uri(secret: bytes, *, account: str, issuer: str, params: TotpParams) -> str:
    digest = getattr(hashlib, _DIGESTS[params.algorithm])
    totp = pyotp.TOTP(base32_secret(secret), digits=params.digits, interval=params.period,
                      digest=digest, name=account, issuer=issuer)
    uri: str = totp.provisioning_uri()
    return uri


def qr_png(uri: str, scale: int = 5) -> bytes:
    out = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_svg(uri: str, scale: int = 5) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(out, kind="svg", scale=scale, border=4, xmldecl=False)
    return out.getvalue().decode()
