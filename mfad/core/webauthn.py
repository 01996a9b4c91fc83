"""Passkeys (WebAuthn) and legacy U2F keys: registration, sign-in, import and upgrade.

python-fido2 (2.x) builds the Level 3 JSON options and verifies the client
data, RP id hash, flags and signature. This module adds what it leaves to the
relying party, and decides in a fixed order so every refusal has its reason:

- ceremonies (registration and sign-in) carry 32 random challenge bytes, live
  server-side only, are bound to their id (a registration id, or the sign-in
  challenge id and method), expire after ``challenge_ttl_seconds`` (5 min) and
  are consumed at most once, whatever the outcome: a replayed response finds
  nothing;
- origins are matched exactly against the allow-list (no subdomain rule, no
  cross-origin iframes); the RP id hash must be the RP id's — or, for a legacy
  U2F key, its AppID's (the ``appid`` extension: a second verifier whose RP id
  is the AppID, chosen by the assertion's signed rpIdHash);
- user presence always, user verification for every passkey (registration and
  sign-in); a key that cannot verify its user cannot become a passkey;
- only ES256, EdDSA and RS256 keys, checked to be well-formed at registration;
- the signature counter moves forward or both counters stay zero ("no
  counter", as synced passkeys do); otherwise the assertion is refused, audited
  as a possible cloned authenticator and counted;
- input that can never be valid (bad JSON, base64, CBOR, wrong types, sizes
  beyond the contract) raises InvalidInput before anything is written or
  consumed; a refused registration stores nothing; an upgrade adds the passkey
  and retires the U2F key in one transaction, or changes nothing.

Every registration, import, upgrade and refusal writes an audit row; sign-in
outcomes are audited by the sign-in service that calls the verifiers here.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from fido2 import cbor
from fido2.attestation.base import Attestation, AttestationResult, AttestationType, AttestationVerifier
from fido2.cose import ES256, CoseKey, UnsupportedKey
from fido2.server import Fido2Server
from fido2.utils import sha256, websafe_decode, websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationConveyancePreference,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    AuthenticatorTransport,
    CollectedClientData,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from mfad.core.settings import WebauthnSettings
from mfad.core.clock import Clock
from mfad.core.credentials import (
    Ceremony,
    CeremonyPurpose,
    DuplicateCredential,
    NewCredential,
    StoredCredential,
)
from mfad.core.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from mfad.core.model import AuditEvent, Challenge, Device, DeviceId, Method, User, UserId, WebauthnInfo
from mfad.core.policy import PolicyService
from mfad.core.ports import Store
from mfad.core.signin import ChallengeStarted, MethodOutcome, Reason, VerifyContext, challenge_hash
from mfad.core.users import UserService

#: COSE algorithm ids of the algorithms ``[webauthn] algorithms`` may name.
ALGORITHMS: Mapping[str, int] = {"ES256": -7, "EdDSA": -8, "RS256": -257}
CHALLENGE_BYTES = 32  # DESIGN §4
USER_HANDLE_BYTES = 32  # WebAuthn allows up to 64; random, never the username
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
_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
_UV = UserVerificationRequirement
_PURPOSE_OF = {False: CeremonyPurpose.REGISTER, True: CeremonyPurpose.UPGRADE}


@runtime_checkable
class WebauthnMetrics(Protocol):
    def clone_warning(self, method: str) -> None: ...
    def registration(self, kind: str, result: str) -> None: ...


class NullWebauthnMetrics:
    def clone_warning(self, method: str) -> None:
        pass

    def registration(self, kind: str, result: str) -> None:
        pass


class RegistrationRefused(PreconditionFailed):
    """A registration (or upgrade) was refused; nothing was stored. ``reason`` is for
    the audit log; the message tells the user what to do."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """A registration ceremony to finish in the browser."""

    registration_id: str
    #: PublicKeyCredentialCreationOptionsJSON (for parseCreationOptionsFromJSON).
    options_json: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    device: Device
    #: The U2F key an upgrade retired.
    retired: DeviceId | None = None


# --- parsing: everything a caller sends is checked here, before fido2 sees it ----------------
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
    return ParsedRegistration(response=response, transports=tuple(t for t in transports if t in _KNOWN_TRANSPORTS),
                              discoverable=rk if isinstance(rk, bool) else None)


def parse_assertion(text: str, field: str = "assertion_json") -> AuthenticationResponse:
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
    return AuthenticationResponse(raw_id=raw_id, response=AuthenticatorAssertionResponse(
        client_data=client_data, authenticator_data=auth_data, signature=signature, user_handle=user_handle))


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


def _usable_key(key: CoseKey, allowed: frozenset[int]) -> bool:
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


def _cose(public_key: bytes) -> CoseKey:
    decoded = cbor.decode(public_key)
    assert isinstance(decoded, Mapping)
    return CoseKey.parse(decoded)


def _es256_from_point(point: bytes) -> CoseKey:
    """A COSE ES256 key from an uncompressed P-256 point (a U2F registration's public key)."""
    numbers = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_numbers()
    return ES256({1: 2, 3: ES256.ALGORITHM, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                  -3: numbers.y.to_bytes(32, "big")})


def _aaguid(credential: AttestedCredentialData) -> str | None:
    return str(credential.aaguid) if credential.aaguid else None


class _AttestationRefused(Exception):
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


# --- the service ------------------------------------------------------------------------------
class WebauthnService:
    def __init__(self, *, store: Store, clock: Clock, users: UserService, policy: PolicyService,
                 settings: WebauthnSettings, metrics: WebauthnMetrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._users = users
        self._policy = policy
        self._settings = settings
        self._metrics = metrics or NullWebauthnMetrics()
        self._origins = frozenset(settings.origins)
        self._algorithms = [ALGORITHMS[a] for a in settings.algorithms]
        self._allowed_algs = frozenset(self._algorithms)
        self._ttl = timedelta(seconds=settings.challenge_ttl_seconds)
        self._rp_hash = sha256(settings.rp_id.encode("utf-8"))
        self._roots: _TrustedRoots | None = None
        if settings.attestation_roots_file:
            with open(settings.attestation_roots_file, "rb") as f:
                self._roots = _TrustedRoots(x509.load_pem_x509_certificates(f.read()))
        self._server = self._make_server(settings.rp_id)
        self._app_servers: dict[str, Fido2Server] = {}

    def _make_server(self, rp_id: str) -> Fido2Server:
        direct = self._settings.attestation == "direct"
        server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name=self._settings.rp_name),
                             attestation=(AttestationConveyancePreference.DIRECT if direct
                                          else AttestationConveyancePreference.NONE),
                             verify_origin=self._origin_ok, verify_attestation=self._check_attestation)
        # fido2's default list includes experimental algorithms (ES256K, ML-DSA): be explicit.
        server.allowed_algorithms = [PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=a)
                                     for a in self._algorithms]
        server.timeout = int(self._ttl.total_seconds() * 1000)  # type: ignore[assignment]  # fido2 annotates None
        return server

    def _app_server(self, app_id: str) -> Fido2Server:
        """The second relying party for legacy U2F assertions made under an AppID."""
        server = self._app_servers.get(app_id)
        if server is None:
            if len(self._app_servers) > 256:
                self._app_servers.clear()
            server = self._app_servers[app_id] = self._make_server(app_id)
        return server

    @property
    def ceremony_ttl(self) -> timedelta:
        """How long a registration or sign-in ceremony is accepted."""
        return self._ttl

    def _origin_ok(self, origin: str) -> bool:
        return origin in self._origins

    # --- registration -----------------------------------------------------------------------
    async def begin_registration(self, username: str, *, name: str, actor: str | None = None,
                                 upgrade: DeviceId | None = None) -> Registration:
        """Creation options for a new passkey (or, with ``upgrade``, for re-registering that
        U2F key as a passkey). ``excludeCredentials`` lists the user's credentials (for an
        upgrade: the passkeys only — the U2F key itself must be allowed to register)."""
        user = await self._users.get(username)
        policy = await self._policy.current()
        if not policy.allows(Method.PASSKEY):
            raise PermissionDenied("the MFA policy does not allow passkeys")
        creds = await self._store.load_credentials(user.id)
        if upgrade is not None:
            old = next((c for c in creds if c.device_id == upgrade and c.method is Method.U2F), None)
            if old is None:
                raise NotFound("device not found")
            name = name or (await self._device_name(upgrade)) or "passkey"
        check_name(name)
        if upgrade is None and len(creds) >= self._settings.max_credentials_per_user:
            raise PreconditionFailed(f"at most {self._settings.max_credentials_per_user} passkeys and security "
                                     "keys per user: unbind one first")
        handle = await self._store.ensure_user_handle(user.id, os.urandom(USER_HANDLE_BYTES))
        exclude = [self._descriptor(c) for c in creds if upgrade is None or c.method is Method.PASSKEY]
        challenge = os.urandom(CHALLENGE_BYTES)
        options, _ = self._server.register_begin(
            PublicKeyCredentialUserEntity(id=handle, name=user.username, display_name=user.username), exclude,
            resident_key_requirement=ResidentKeyRequirement(self._settings.resident_key),
            user_verification=_UV.REQUIRED, challenge=challenge, extensions={"credProps": True})
        public_key = dict(options)["publicKey"]
        if self._settings.attestation == "direct":
            public_key["attestationFormats"] = [f for f in self._settings.attestation_formats if f != "none"]
        registration_id = self._new_id()
        now = self._clock.now()
        expires = now + self._ttl
        kind = "upgrade" if upgrade is not None else "passkey"
        await self._store.insert_ceremony(
            Ceremony(id_hash=challenge_hash(registration_id), purpose=_PURPOSE_OF[upgrade is not None],
                     user_id=user.id, challenge=challenge,
                     state=json.dumps({"name": name, "upgrade": upgrade}), created_at=now, expires_at=expires),
            [AuditEvent(event="u2f_upgrade_started" if upgrade is not None else "device_bind_started", outcome="ok",
                        user_id=user.id, username=user.username, method=Method.PASSKEY.value, actor=actor,
                        detail=f"device={upgrade}" if upgrade is not None else f"kind={kind}")])
        return Registration(registration_id=registration_id, options_json=json.dumps(public_key),
                            expires_at=expires)

    async def complete_registration(self, username: str, registration_id: str, credential_json: str, *,
                                    actor: str | None = None, upgrade: bool = False) -> Registered:
        """Verify the browser's new credential and store it (active at once). Refusals raise
        RegistrationRefused (FAILED_PRECONDITION) and store nothing; a failed upgrade leaves
        the U2F key as it was."""
        user = await self._users.get(username)
        if not registration_id or len(registration_id) > ID_MAX_CHARS:
            raise InvalidInput("registration_id", "is not a registration id")
        parsed = parse_registration(credential_json)
        kind = "upgrade" if upgrade else "passkey"
        ceremony = await self._store.consume_ceremony(challenge_hash(registration_id))
        now = self._clock.now()
        if ceremony is None or ceremony.purpose is not _PURPOSE_OF[upgrade] or ceremony.user_id != user.id:
            await self._refuse(user, kind, actor, "unknown_registration", None)
            raise RegistrationRefused("unknown_registration",
                                      "the registration is unknown, used or expired: begin again")
        state = json.loads(ceremony.state)
        retire: DeviceId | None = DeviceId(state["upgrade"]) if state.get("upgrade") is not None else None
        if now >= ceremony.expires_at:
            await self._refuse(user, kind, actor, "expired", retire)
            raise RegistrationRefused("expired", "the registration expired: begin again")
        refusal = self._check_registration(parsed.response, ceremony.challenge, upgrade=upgrade)
        if refusal is not None:
            await self._refuse(user, kind, actor, refusal.reason, retire)
            raise refusal
        att = parsed.response.response.attestation_object
        auth = att.auth_data
        credential = auth.credential_data
        assert credential is not None
        info = WebauthnInfo(credential_id=websafe_encode(credential.credential_id),
                            backup_eligible=auth.is_backup_eligible(), backup_state=auth.is_backed_up(),
                            aaguid=_aaguid(credential), transports=parsed.transports, attestation=att.fmt,
                            discoverable=parsed.discoverable)
        new = NewCredential(method=Method.PASSKEY, name=str(state["name"]), credential_id=credential.credential_id,
                            public_key=cbor.encode(dict(credential.public_key)), sign_count=auth.counter,
                            app_id=None, info=info)

        def audit(device_id: DeviceId) -> list[AuditEvent]:
            events = [AuditEvent(event="device_bound", outcome="ok", user_id=user.id, username=user.username,
                                 method=Method.PASSKEY.value, actor=actor,
                                 detail=f"device={device_id} attestation={att.fmt} "
                                        f"backup_eligible={info.backup_eligible}"
                                        + (f" upgrade_of={retire}" if retire is not None else ""))]
            if retire is not None:
                events.append(AuditEvent(event="u2f_upgraded", outcome="ok", user_id=user.id, username=user.username,
                                         method=Method.U2F.value, actor=actor,
                                         detail=f"retired={retire} passkey={device_id}"))
            return events

        try:
            device = await self._store.insert_webauthn_device(user.id, new, now, audit, retire=retire)
        except DuplicateCredential:
            await self._refuse(user, kind, actor, "duplicate_credential", retire)
            raise RegistrationRefused("duplicate_credential",
                                      "this authenticator's credential is registered already") from None
        except PreconditionFailed as exc:
            await self._refuse(user, kind, actor, "u2f_key_gone", retire)
            raise RegistrationRefused("u2f_key_gone", str(exc)) from None
        self._metrics.registration(kind, "ok")
        return Registered(device=device, retired=retire)

    def _check_registration(self, r: RegistrationResponse, challenge: bytes, *,
                            upgrade: bool) -> RegistrationRefused | None:
        cd = r.response.client_data
        att = r.response.attestation_object
        auth = att.auth_data
        credential = auth.credential_data
        assert credential is not None
        if cd.type != CollectedClientData.TYPE.CREATE:
            return RegistrationRefused(Reason.BAD_CLIENT_DATA.value, "the response is not a registration")
        if cd.origin not in self._origins or cd.cross_origin:
            return RegistrationRefused(Reason.WRONG_ORIGIN.value, "the credential was made for another site (origin)")
        if not constant_time.bytes_eq(cd.challenge, challenge):
            return RegistrationRefused(Reason.WRONG_CHALLENGE.value,
                                       "the credential answers another registration: begin again")
        if not constant_time.bytes_eq(auth.rp_id_hash, self._rp_hash):
            return RegistrationRefused(Reason.WRONG_RP_ID.value,
                                       "the credential was made for another relying party id")
        if not auth.is_user_present():
            return RegistrationRefused(Reason.USER_NOT_PRESENT.value, "the authenticator did not confirm presence")
        if not auth.is_user_verified():
            u2f_only = att.fmt == "fido-u2f" or not credential.aaguid
            if upgrade:
                return RegistrationRefused(Reason.USER_NOT_VERIFIED.value, (
                    "this security key did not verify you with a PIN or biometrics"
                    + (": it speaks only U2F (CTAP1)" if u2f_only else "")
                    + ", so it cannot become a passkey. It keeps working as a U2F key."))
            return RegistrationRefused(Reason.USER_NOT_VERIFIED.value, (
                "the authenticator did not verify you with a PIN or biometrics; a passkey needs that"
                + (" (a key that speaks only U2F cannot do it)" if u2f_only else "")))
        if not _usable_key(credential.public_key, self._allowed_algs):
            return RegistrationRefused("algorithm_not_allowed", "the authenticator's key type is not accepted here")
        try:
            self._server.register_complete({"challenge": websafe_encode(challenge),
                                            "user_verification": _UV.REQUIRED}, r)
        except _AttestationRefused as exc:
            return RegistrationRefused(exc.reason, exc.message)
        except Exception:  # noqa: BLE001 - fido2 raises ValueError for every failure
            return RegistrationRefused("rejected", "the credential was rejected")
        return None

    def _check_attestation(self, attestation: AttestationObject, client_data_hash: bytes) -> None:
        """Called by fido2 only with ``attestation = "direct"``."""
        fmt = attestation.fmt
        if fmt not in self._settings.attestation_formats:
            raise _AttestationRefused("attestation_format", f"attestation format {fmt!r} is not accepted here")
        if fmt == "none":
            return
        if self._roots is not None:
            try:
                self._roots.verify_attestation(attestation, client_data_hash)
            except Exception:  # noqa: BLE001
                raise _AttestationRefused("attestation_untrusted",
                                          "the authenticator's attestation is not trusted here") from None
            return
        try:
            result = Attestation.for_type(fmt)().verify(attestation.att_stmt, attestation.auth_data,
                                                        client_data_hash)
        except Exception:  # noqa: BLE001
            raise _AttestationRefused("attestation_invalid", "the authenticator's attestation is invalid") from None
        if result.attestation_type is AttestationType.NONE:
            raise _AttestationRefused("attestation_format", "an attestation statement is required here")

    async def _refuse(self, user: User, kind: str, actor: str | None, reason: str, retire: DeviceId | None) -> None:
        self._metrics.registration(kind, reason)
        await self._store.append_audit(self._clock.now(), [AuditEvent(
            event="u2f_upgrade" if kind == "upgrade" else "device_bind_confirmed", outcome="refused",
            user_id=user.id, username=user.username, method=Method.PASSKEY.value, actor=actor, reason=reason,
            detail=f"device={retire}" if retire is not None else None)])

    async def _device_name(self, device_id: DeviceId) -> str | None:
        device = await self._store.load_device(device_id)
        return device.name if device is not None else None

    # --- legacy U2F ------------------------------------------------------------------------
    async def import_u2f(self, username: str, *, name: str, key_handle: bytes, public_key: bytes, app_id: str,
                         counter: int, actor: str | None = None) -> Device:
        """Import a U2F registration from an older system (the migration path)."""
        name = check_name(name or "U2F key")
        if not 1 <= len(key_handle) <= MAX_U2F_KEY_HANDLE:
            raise InvalidInput("key_handle", f"must be 1 to {MAX_U2F_KEY_HANDLE} bytes")
        if len(public_key) != 65 or public_key[0] != 4:
            raise InvalidInput("public_key", "must be an uncompressed P-256 point (65 bytes, 0x04 || X || Y)")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        except ValueError:
            raise InvalidInput("public_key", "is not a point on P-256") from None
        check_app_id(app_id)
        if not 0 <= counter <= 0xFFFFFFFF:
            raise InvalidInput("counter", "must be 0 to 4294967295")
        user = await self._users.get(username)
        if not (await self._policy.current()).allows(Method.U2F):
            raise PermissionDenied("the MFA policy does not allow U2F keys")
        if len(await self._store.load_credentials(user.id)) >= self._settings.max_credentials_per_user:
            raise PreconditionFailed(f"at most {self._settings.max_credentials_per_user} passkeys and security "
                                     "keys per user: unbind one first")
        info = WebauthnInfo(credential_id=websafe_encode(key_handle), app_id=app_id, transports=("usb",),
                            attestation="imported")
        new = NewCredential(method=Method.U2F, name=name, credential_id=key_handle,
                            public_key=cbor.encode(dict(_es256_from_point(public_key))), sign_count=counter,
                            app_id=app_id, info=info)

        def audit(device_id: DeviceId) -> list[AuditEvent]:
            return [AuditEvent(event="u2f_imported", outcome="ok", user_id=user.id, username=user.username,
                               method=Method.U2F.value, actor=actor,
                               detail=f"device={device_id} app_id={app_id} counter={counter}")]

        try:
            device = await self._store.insert_webauthn_device(user.id, new, self._clock.now(), audit)
        except DuplicateCredential:
            self._metrics.registration("u2f_import", "duplicate_credential")
            raise AlreadyExists("key_handle: this key is registered already") from None
        self._metrics.registration("u2f_import", "ok")
        return device

    # --- sign-in -----------------------------------------------------------------------------
    async def start_signin(self, ctx: VerifyContext, challenge: Challenge, method: Method) -> ChallengeStarted:
        """Request options for ``method``'s credentials of the challenge's user, accepted for
        the ceremony's life cut to the challenge's. Passkeys: user verification required. U2F
        keys: the ``appid`` extension, no UV (they have none)."""
        creds = [c for c in await self._store.load_credentials(ctx.user.id) if c.method is method]
        if not creds:
            raise PreconditionFailed(f"method: the user has no {method} bound")
        app_id = None
        extensions = None
        if method is Method.U2F:
            # One AppID per ceremony (the extension takes one): the most common among the keys.
            app_id = Counter(c.app_id for c in creds if c.app_id).most_common(1)[0][0]
            extensions = {"appid": app_id}
        uv = _UV.REQUIRED if method is Method.PASSKEY else _UV.DISCOURAGED
        challenge_bytes = os.urandom(CHALLENGE_BYTES)
        options, _ = self._server.authenticate_begin([self._descriptor(c) for c in creds], user_verification=uv,
                                                     challenge=challenge_bytes, extensions=extensions)
        now = self._clock.now()
        state = {"method": method.value, "uv": uv.value, "allowed": [websafe_encode(c.credential_id) for c in creds]}
        await self._store.insert_ceremony(Ceremony(
            id_hash=_signin_ceremony(challenge.id_hash, method), purpose=CeremonyPurpose.SIGNIN,
            user_id=ctx.user.id, challenge=challenge_bytes, state=json.dumps(state), created_at=now,
            expires_at=now + self._ttl), [])
        return ChallengeStarted(method=method, shown=json.dumps(dict(options)["publicKey"]),
                                expires_at=min(ctx.now + self._ttl, challenge.expires_at))

    async def open_usernameless(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> datetime:
        expires = now + self._ttl
        await self._store.insert_ceremony(Ceremony(
            id_hash=id_hash, purpose=CeremonyPurpose.USERNAMELESS, user_id=None,
            challenge=os.urandom(CHALLENGE_BYTES),
            state=json.dumps({"method": Method.PASSKEY.value, "uv": _UV.REQUIRED.value}),
            created_at=now, expires_at=expires), audit)
        return expires

    async def start_usernameless(self, id_hash: str, now: datetime) -> str | None:
        ceremony = await self._store.load_ceremony(id_hash)
        if ceremony is None or ceremony.purpose is not CeremonyPurpose.USERNAMELESS or now >= ceremony.expires_at:
            return None
        options, _ = self._server.authenticate_begin(None, user_verification=_UV.REQUIRED,
                                                     challenge=ceremony.challenge)
        return json.dumps(dict(options)["publicKey"])

    async def identify(self, id_hash: str, response: str, now: datetime) -> UserId | Reason:
        parsed = parse_assertion(response)
        ceremony = await self._store.load_ceremony(id_hash)
        if ceremony is None or ceremony.purpose is not CeremonyPurpose.USERNAMELESS:
            return Reason.NO_CHALLENGE
        if now >= ceremony.expires_at:
            return Reason.EXPIRED
        credential = await self._store.load_credential(parsed.raw_id)
        if credential is None or credential.method is not Method.PASSKEY:
            return Reason.UNKNOWN_CREDENTIAL
        return credential.user_id

    async def verify_signin(self, ctx: VerifyContext, response: str, method: Method) -> MethodOutcome:
        """Verify an assertion for ``ctx``'s user and, when every check passes, commit the
        success (counter, challenge, counters reset, audit) in one transaction."""
        parsed = parse_assertion(response)
        p = ctx.pending
        if p.usernameless is not None:
            id_hash, purpose = p.usernameless, CeremonyPurpose.USERNAMELESS
        elif p.challenge_hash is not None:
            id_hash, purpose = _signin_ceremony(p.challenge_hash, method), CeremonyPurpose.SIGNIN
        else:
            return _refused(Reason.NO_CHALLENGE)
        ceremony = await self._store.consume_ceremony(id_hash)  # single use, whatever follows
        if ceremony is None or ceremony.purpose is not purpose \
                or (ceremony.user_id is not None and ceremony.user_id != ctx.user.id):
            return _refused(Reason.NO_CEREMONY)
        if ctx.now >= ceremony.expires_at:
            return _refused(Reason.EXPIRED)
        state = json.loads(ceremony.state)
        if state.get("method") != method.value:
            return _refused(Reason.NO_CEREMONY)
        allowed = state.get("allowed")
        credential = next((c for c in await self._store.load_credentials(ctx.user.id)
                           if c.method is method and c.credential_id == parsed.raw_id
                           and (allowed is None or websafe_encode(c.credential_id) in allowed)), None)
        if credential is None:
            return _refused(Reason.UNKNOWN_CREDENTIAL)
        if parsed.response.user_handle is not None:
            handle = await self._store.load_user_handle(ctx.user.id)
            if handle is None or not constant_time.bytes_eq(handle, parsed.response.user_handle):
                return _refused(Reason.UNKNOWN_CREDENTIAL)
        reason = self._check_assertion(parsed, ceremony.challenge, credential,
                                       uv_required=state.get("uv") == _UV.REQUIRED.value)
        if reason is not None:
            return _refused(reason)
        auth = parsed.response.authenticator_data
        if not (auth.counter == 0 and credential.sign_count == 0) and auth.counter <= credential.sign_count:
            await self._clone_warning(ctx, credential, auth.counter)
            return _refused(Reason.POSSIBLE_CLONE)
        info = dataclasses.replace(credential.info, backup_state=auth.is_backed_up())
        audit = list(p.audit)
        if audit:
            audit[-1] = dataclasses.replace(audit[-1], detail=f"device={credential.device_id}"
                                            + (f" app_id={credential.app_id}"
                                               if auth.rp_id_hash != self._rp_hash else ""))
        if await self._store.accept_webauthn(credential.device_id, ctx.user.id, auth.counter, info, ctx.now,
                                             p.challenge_hash, audit, p.remember, p.remember_hash):
            return MethodOutcome(accepted=True, reason=Reason.ACCEPTED)
        # Another request with the same counter (or for the same challenge) won the race.
        return _refused(Reason.REPLAY)

    def _check_assertion(self, a: AuthenticationResponse, challenge: bytes, credential: StoredCredential, *,
                         uv_required: bool) -> Reason | None:
        cd = a.response.client_data
        auth = a.response.authenticator_data
        if cd.type != CollectedClientData.TYPE.GET:
            return Reason.BAD_CLIENT_DATA
        if cd.origin not in self._origins or cd.cross_origin:
            return Reason.WRONG_ORIGIN
        if not constant_time.bytes_eq(cd.challenge, challenge):
            return Reason.WRONG_CHALLENGE
        # The signed rpIdHash chooses the relying party: the RP id, or a U2F key's AppID.
        if constant_time.bytes_eq(auth.rp_id_hash, self._rp_hash):
            server = self._server
        elif credential.app_id and constant_time.bytes_eq(auth.rp_id_hash, sha256(credential.app_id.encode())):
            server = self._app_server(credential.app_id)
        else:
            return Reason.WRONG_RP_ID
        if not auth.is_user_present():
            return Reason.USER_NOT_PRESENT
        if uv_required and not auth.is_user_verified():
            return Reason.USER_NOT_VERIFIED
        try:
            key = AttestedCredentialData.create(Aaguid.NONE, credential.credential_id, _cose(credential.public_key))
            server.authenticate_complete({"challenge": websafe_encode(challenge),
                                          "user_verification": _UV.REQUIRED if uv_required else _UV.DISCOURAGED},
                                         [key], a)
        except Exception:  # noqa: BLE001 - everything else was checked above: the signature
            return Reason.BAD_SIGNATURE
        return None

    async def _clone_warning(self, ctx: VerifyContext, credential: StoredCredential, received: int) -> None:
        self._metrics.clone_warning(credential.method.value)
        await self._store.append_audit(ctx.now, [AuditEvent(
            event="webauthn_clone_warning", outcome="refused", user_id=ctx.user.id, username=ctx.user.username,
            method=credential.method.value, protocol=ctx.attempt.protocol, source=ctx.attempt.source,
            actor=ctx.attempt.client, reason=Reason.POSSIBLE_CLONE.value,
            detail=f"device={credential.device_id} stored_count={credential.sign_count} received_count={received}: "
                   "possible cloned authenticator")])

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _descriptor(c: StoredCredential) -> PublicKeyCredentialDescriptor:
        transports = [AuthenticatorTransport(t) for t in c.info.transports if t in _KNOWN_TRANSPORTS]
        return PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c.credential_id,
                                             transports=transports or None)

    @staticmethod
    def _new_id() -> str:
        return websafe_encode(os.urandom(16))


def _signin_ceremony(challenge_id_hash: str, method: Method) -> str:
    """A sign-in ceremony is bound to its challenge and method."""
    return f"{challenge_id_hash}:{method.value}"


def _refused(reason: Reason) -> MethodOutcome:
    return MethodOutcome(accepted=False, reason=reason)


# --- the verifiers the sign-in service calls -----------------------------------------------------
class PasskeyVerifier:
    """Passkeys: UV required; also answers usernameless sign-in (discoverable credentials)."""

    method = Method.PASSKEY

    def __init__(self, service: WebauthnService) -> None:
        self._service = service

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        return await self._service.start_signin(ctx, challenge, Method.PASSKEY)

    async def verify(self, ctx: VerifyContext, response: str) -> MethodOutcome:
        return await self._service.verify_signin(ctx, response, Method.PASSKEY)

    async def open_usernameless(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> datetime:
        return await self._service.open_usernameless(id_hash, now, audit)

    async def start_usernameless(self, id_hash: str, now: datetime) -> ChallengeStarted | None:
        options = await self._service.start_usernameless(id_hash, now)
        if options is None:
            return None
        return ChallengeStarted(method=self.method, shown=options, expires_at=now + self._service.ceremony_ttl)

    async def identify(self, id_hash: str, response: str, now: datetime) -> UserId | Reason:
        return await self._service.identify(id_hash, response, now)


class U2fVerifier:
    """Legacy U2F keys: assertions under their AppID (the ``appid`` extension), UP only."""

    method = Method.U2F

    def __init__(self, service: WebauthnService) -> None:
        self._service = service

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        return await self._service.start_signin(ctx, challenge, Method.U2F)

    async def verify(self, ctx: VerifyContext, response: str) -> MethodOutcome:
        return await self._service.verify_signin(ctx, response, Method.U2F)
