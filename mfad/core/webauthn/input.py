"""WebAuthn input: everything a caller sends is checked here, before fido2 sees it.

Input that can never be valid (bad JSON, base64, CBOR, wrong types, sizes beyond the
contract) raises InvalidInput naming the field, before anything is written or consumed.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fido2 import cbor
from fido2.utils import websafe_decode
from fido2.webauthn import (
    AttestationObject,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    AuthenticatorTransport,
    CollectedClientData,
    RegistrationResponse,
)

from mfad.core.errors import InvalidInput

#: The gRPC contract's limit for WebAuthn JSON.
MAX_JSON_CHARS = 16 * 1024
#: A browser's clientDataJSON is 150-400 bytes; this leaves room for extensions.
MAX_CLIENT_DATA_BYTES = 4096
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn §5.8.3
MAX_SIGNATURE_BYTES = 1024  # RS256 with a 4096-bit key is 512
MAX_U2F_KEY_HANDLE = 255  # U2F: the length is one byte
MAX_NAME = 64
MAX_APP_ID = 512
ID_MAX_CHARS = 64

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def _json_object(text: str, field: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        raise InvalidInput(field, "must be the credential's JSON (credential.toJSON())")
    if len(text) > MAX_JSON_CHARS:
        raise InvalidInput(field, f"must be at most {MAX_JSON_CHARS} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput(field, "is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(field, "must be a JSON object")
    return data


def _b64(value: object, field: str, *, max_bytes: int, min_bytes: int = 1) -> bytes:
    # Strings only: fido2 turns an integer into bytes(n) (n zero bytes) — never hand it one.
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) > (max_bytes * 4 + 2) // 3 + 2:
        raise InvalidInput(field, f"must be base64url of {min_bytes} to {max_bytes} bytes")
    try:
        data = websafe_decode(value)
    except (ValueError, binascii.Error):
        raise InvalidInput(field, "must be base64url") from None
    if not min_bytes <= len(data) <= max_bytes:
        raise InvalidInput(field, f"must be base64url of {min_bytes} to {max_bytes} bytes")
    return data


def _credential_id(d: Mapping[str, Any], field: str) -> bytes:
    raw_id = _b64(d.get("rawId"), f"{field}.rawId", max_bytes=MAX_CREDENTIAL_ID_BYTES)
    if "id" in d and d["id"] != d["rawId"]:
        raise InvalidInput(f"{field}.id", "must equal rawId")
    if d.get("type", "public-key") != "public-key":
        raise InvalidInput(f"{field}.type", "must be 'public-key'")
    if not isinstance(d.get("response"), dict):
        raise InvalidInput(f"{field}.response", "must be a JSON object")
    ext = d.get("clientExtensionResults")
    if ext is not None and not isinstance(ext, dict):
        raise InvalidInput(f"{field}.clientExtensionResults", "must be a JSON object")
    return raw_id


def _client_data(value: object, field: str) -> CollectedClientData:
    raw = _b64(value, field, max_bytes=MAX_CLIENT_DATA_BYTES)
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput(field, "is not UTF-8 JSON") from None
    if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("type", "challenge", "origin")) \
            or not _B64URL.fullmatch(d["challenge"]) or not isinstance(d.get("crossOrigin", False), bool) \
            or not isinstance(d.get("topOrigin", ""), str):
        raise InvalidInput(field, "must hold type, challenge and origin strings")
    try:
        return CollectedClientData(raw)
    except Exception:  # noqa: BLE001 - third-party parse errors stop here
        raise InvalidInput(field, "is not valid client data") from None


@dataclass(frozen=True, slots=True)
class ParsedRegistration:
    response: RegistrationResponse
    transports: tuple[str, ...]
    discoverable: bool | None


def parse_registration(text: str, field: str = "credential_json") -> ParsedRegistration:
    """A RegistrationResponseJSON (``credential.toJSON()`` after ``create``). Raises
    InvalidInput naming the field for anything that can never be valid."""
    d = _json_object(text, field)
    raw_id = _credential_id(d, field)
    r = d["response"]
    client_data = _client_data(r.get("clientDataJSON"), f"{field}.response.clientDataJSON")
    att_raw = _b64(r.get("attestationObject"), f"{field}.response.attestationObject", max_bytes=MAX_JSON_CHARS)
    att_field = f"{field}.response.attestationObject"
    try:
        # Types first: fido2 would turn an integer authData into bytes(n).
        outer = cbor.decode(att_raw)
        if not (isinstance(outer, Mapping) and isinstance(outer.get("fmt"), str)
                and isinstance(outer.get("authData"), bytes) and isinstance(outer.get("attStmt"), Mapping)):
            raise ValueError("wrong types")
        attestation = AttestationObject(att_raw)
        credential = attestation.auth_data.credential_data
    except InvalidInput:
        raise
    except Exception:  # noqa: BLE001 - truncated or invalid CBOR, bad COSE key, ...
        raise InvalidInput(att_field, "is not a valid CBOR attestation object") from None
    if credential is None:
        raise InvalidInput(att_field, "carries no credential")
    if credential.credential_id != raw_id:
        raise InvalidInput(f"{field}.rawId", "does not match the credential in the attestation object")
    transports = r.get("transports", [])
    if not isinstance(transports, list) or len(transports) > 8 \
            or not all(isinstance(t, str) and len(t) <= 32 for t in transports):
        raise InvalidInput(f"{field}.response.transports", "must be a list of transport names")
    props = (d.get("clientExtensionResults") or {}).get("credProps")
    rk = props.get("rk") if isinstance(props, dict) else None
    response = RegistrationResponse(raw_id=raw_id, response=AuthenticatorAttestationResponse(
        client_data=client_data, attestation_object=attestation))
    return ParsedRegistration(response=response, transports=tuple(t for t in transports if t in KNOWN_TRANSPORTS),
                              discoverable=rk if isinstance(rk, bool) else None)


@dataclass(frozen=True, slots=True)
class ParsedAssertion:
    """An AuthenticationResponseJSON's parts, checked for form. The signature covers
    ``authenticator_data + client_data.hash``. (fido2's own AuthenticationResponse resolves
    its type hints again for every instance made: a third of a sign-in's CPU.)"""

    raw_id: bytes
    client_data: CollectedClientData
    authenticator_data: AuthenticatorData
    signature: bytes
    user_handle: bytes | None


def parse_assertion(text: str, field: str = "assertion_json") -> ParsedAssertion:
    """An AuthenticationResponseJSON (``credential.toJSON()`` after ``get``)."""
    d = _json_object(text, field)
    raw_id = _credential_id(d, field)
    r = d["response"]
    client_data = _client_data(r.get("clientDataJSON"), f"{field}.response.clientDataJSON")
    auth_raw = _b64(r.get("authenticatorData"), f"{field}.response.authenticatorData", max_bytes=MAX_JSON_CHARS,
                    min_bytes=37)
    try:
        auth_data = AuthenticatorData(auth_raw)
    except Exception:  # noqa: BLE001
        raise InvalidInput(f"{field}.response.authenticatorData", "is not valid authenticator data") from None
    signature = _b64(r.get("signature"), f"{field}.response.signature", max_bytes=MAX_SIGNATURE_BYTES)
    handle = r.get("userHandle")
    user_handle = None if handle in (None, "") else _b64(handle, f"{field}.response.userHandle", max_bytes=64)
    return ParsedAssertion(raw_id=raw_id, client_data=client_data, authenticator_data=auth_data, signature=signature,
                           user_handle=user_handle)


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise InvalidInput("name", f"must be 1 to {MAX_NAME} printable characters")
    return name


def check_app_id(app_id: str) -> str:
    """A U2F AppID: an https URL (browsers accept only https AppIDs on https pages)."""
    try:
        parts = urlsplit(app_id)
        parts.port  # noqa: B018  (raises on a bad port)
    except (ValueError, TypeError):
        raise InvalidInput("app_id", "must be an https URL") from None
    if not app_id or len(app_id) > MAX_APP_ID or parts.scheme != "https" or not parts.hostname \
            or parts.fragment or parts.username or not app_id.isprintable() or " " in app_id:
        raise InvalidInput("app_id", "must be an https URL")
    return app_id
