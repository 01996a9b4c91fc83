"""A software WebAuthn authenticator and client for the tests.

It plays both the browser (clientDataJSON, the JSON forms of ``toJSON()``) and
the authenticator (authenticator data, attestation statements, signatures)
with EC P-256 keys from ``cryptography`` and a CBOR encoder of its own, so the
server's decoder is checked against an independent encoder. Every field a
check looks at can be bent (origin, RP id, flags, counter, challenge) to drive
the negative tests.

Attestation formats: ``none``, ``packed`` (self attestation, or with an x5c
chain from :class:`AttestationCa`) and ``fido-u2f`` (what a CTAP1 key makes).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

UP, UV, BE, BS, AT, ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80
ZERO_AAGUID = bytes(16)
SOFT_AAGUID = bytes.fromhex("6d666164736f66746175746800000001")


# --- CBOR (RFC 8949), the subset WebAuthn uses: deterministic map key order --------------------
def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError("integer too large")


def cbor(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes | bytearray):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, Mapping):
        items = [(cbor(k), cbor(v)) for k, v in value.items()]
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))  # CTAP2 canonical order
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    if isinstance(value, Sequence):
        return _head(4, len(value)) + b"".join(cbor(v) for v in value)
    raise TypeError(f"cannot encode {type(value)}")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def cose_es256(key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    n = key.public_numbers()
    return {1: 2, 3: -7, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}


def u2f_point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


@dataclass
class AttestationCa:
    """A root and an attestation certificate as an authenticator vendor would have them."""

    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    leaf_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfad test attestation root")])
        self.root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                     .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.root_key, hashes.SHA256()))
        leaf_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mfad tests"),
                               x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "soft authenticator")])
        self.leaf = (x509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name)
                     .public_key(self.leaf_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                     .sign(self.root_key, hashes.SHA256()))

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def leaf_der(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str  # the RP id, or the AppID for a U2F registration
    user_handle: bytes | None
    sign_count: int = 0
    counting: bool = True  # False: always 0 ("no counter", as synced passkeys do)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


@dataclass
class SoftAuthenticator:
    """A CTAP2 authenticator with UV (a platform passkey), or with ``u2f_only`` a CTAP1 key."""

    aaguid: bytes = SOFT_AAGUID
    u2f_only: bool = False
    backup_eligible: bool = False
    backup_state: bool = False
    counting: bool = True
    ca: AttestationCa | None = None
    credentials: list[SoftCredential] = field(default_factory=list)

    # --- registration -----------------------------------------------------------------------
    def create(self, options_json: str | Mapping[str, Any], origin: str, *, attestation: str = "none",
               uv: bool | None = None, up: bool = True, rp_id: str | None = None, challenge: bytes | None = None,
               type_: str = "webauthn.create", alg: int = -7, extra_client_data: Mapping[str, Any] | None = None,
               ) -> dict[str, Any]:
        """``navigator.credentials.create()`` then ``toJSON()``; the overrides bend one field."""
        o = json.loads(options_json) if isinstance(options_json, str) else options_json
        rp = rp_id if rp_id is not None else o["rp"].get("id")
        key = ec.generate_private_key(ec.SECP256R1())
        credential_id = os.urandom(32 if not self.u2f_only else 64)
        user_handle = unb64u(o["user"]["id"])
        client_data = json.dumps({"type": type_, "challenge": b64u(challenge) if challenge is not None
                                  else o["challenge"], "origin": origin, "crossOrigin": False,
                                  **(extra_client_data or {})}, separators=(",", ":")).encode()
        verified = (not self.u2f_only) if uv is None else uv
        flags = (UP if up else 0) | (UV if verified else 0) | AT
        if self.backup_eligible:
            flags |= BE
        if self.backup_state:
            flags |= BS
        cose = cose_es256(key.public_key())
        cose[3] = alg
        aaguid = ZERO_AAGUID if self.u2f_only else self.aaguid
        cred_data = aaguid + struct.pack(">H", len(credential_id)) + credential_id + cbor(cose)
        rp_hash = sha256(rp.encode())
        auth_data = rp_hash + struct.pack(">BI", flags, 0) + cred_data
        cdh = sha256(client_data)
        stmt: dict[str, Any]
        if attestation == "none":
            stmt = {}
        elif attestation == "packed":
            if self.ca is not None:
                sig = self.ca.leaf_key.sign(auth_data + cdh, ec.ECDSA(hashes.SHA256()))
                stmt = {"alg": -7, "sig": sig, "x5c": [self.ca.leaf_der()]}
            else:
                stmt = {"alg": -7, "sig": key.sign(auth_data + cdh, ec.ECDSA(hashes.SHA256()))}
        elif attestation == "fido-u2f":
            ca = self.ca or AttestationCa()
            signed = b"\x00" + rp_hash + cdh + credential_id + u2f_point(key.public_key())
            stmt = {"sig": ca.leaf_key.sign(signed, ec.ECDSA(hashes.SHA256())), "x5c": [ca.leaf_der()]}
        else:
            raise ValueError(attestation)
        att_obj = cbor({"fmt": attestation, "attStmt": stmt, "authData": auth_data})
        resident = (o.get("authenticatorSelection") or {}).get("residentKey") == "required"
        self.credentials.append(SoftCredential(credential_id=credential_id, private_key=key, rp_id=rp,
                                               user_handle=user_handle if resident else None,
                                               counting=self.counting))
        return {"id": b64u(credential_id), "rawId": b64u(credential_id), "type": "public-key",
                "authenticatorAttachment": "cross-platform" if self.u2f_only else "platform",
                "clientExtensionResults": {"credProps": {"rk": resident}} if not self.u2f_only else {},
                "response": {"clientDataJSON": b64u(client_data), "attestationObject": b64u(att_obj),
                             "transports": ["usb"] if self.u2f_only else ["internal"]}}

    def u2f_register(self, app_id: str) -> tuple[bytes, bytes, SoftCredential]:
        """A legacy U2F registration under ``app_id``: (key handle, 65-byte public key, credential)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cred = SoftCredential(credential_id=os.urandom(64), private_key=key, rp_id=app_id, user_handle=None,
                              sign_count=0, counting=True)
        self.credentials.append(cred)
        return cred.credential_id, u2f_point(key.public_key()), cred

    # --- assertion ----------------------------------------------------------------------------
    def get(self, options_json: str | Mapping[str, Any], origin: str, *, credential: SoftCredential | None = None,
            uv: bool | None = None, up: bool = True, rp_id: str | None = None, counter: int | None = None,
            challenge: bytes | None = None, type_: str = "webauthn.get", user_handle: bytes | None | bool = True,
            corrupt_signature: bool = False) -> dict[str, Any]:
        """``navigator.credentials.get()`` then ``toJSON()``. Picks the first credential the
        options allow (or any, for an empty allow list), as a browser would; U2F keys answer
        under the ``appid`` extension's AppID when they were registered under it."""
        o = json.loads(options_json) if isinstance(options_json, str) else options_json
        cred = credential or self._pick(o)
        appid = (o.get("extensions") or {}).get("appid")
        signing_rp = rp_id if rp_id is not None else (appid if appid and cred.rp_id == appid else o.get("rpId"))
        if cred.counting:
            cred.sign_count += 1
        count = counter if counter is not None else (cred.sign_count if cred.counting else 0)
        verified = (not self.u2f_only) if uv is None else uv
        flags = (UP if up else 0) | (UV if verified else 0)
        if self.backup_eligible:
            flags |= BE
        if self.backup_state:
            flags |= BS
        auth_data = sha256(signing_rp.encode()) + struct.pack(">BI", flags, count)
        client_data = json.dumps({"type": type_, "challenge": b64u(challenge) if challenge is not None
                                  else o["challenge"], "origin": origin, "crossOrigin": False},
                                 separators=(",", ":")).encode()
        sig = cred.private_key.sign(auth_data + sha256(client_data), ec.ECDSA(hashes.SHA256()))
        if corrupt_signature:
            other = ec.generate_private_key(ec.SECP256R1())
            sig = other.sign(auth_data + sha256(client_data), ec.ECDSA(hashes.SHA256()))
        response: dict[str, Any] = {"clientDataJSON": b64u(client_data), "authenticatorData": b64u(auth_data),
                                    "signature": b64u(sig)}
        if user_handle is True:
            if cred.user_handle is not None:
                response["userHandle"] = b64u(cred.user_handle)
        elif isinstance(user_handle, bytes):
            response["userHandle"] = b64u(user_handle)
        ext = {"appid": True} if appid and cred.rp_id == appid else {}
        return {"id": b64u(cred.credential_id), "rawId": b64u(cred.credential_id), "type": "public-key",
                "authenticatorAttachment": "cross-platform" if self.u2f_only else "platform",
                "clientExtensionResults": ext, "response": response}

    def _pick(self, o: Mapping[str, Any]) -> SoftCredential:
        allowed = [unb64u(c["id"]) for c in o.get("allowCredentials") or []]
        for cred in self.credentials:
            if not allowed and cred.user_handle is not None and cred.rp_id == o.get("rpId"):
                return cred
            if cred.credential_id in allowed:
                return cred
        raise LookupError("no credential of this authenticator is allowed (NotAllowedError)")


def dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj)
