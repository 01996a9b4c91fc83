"""The WebAuthn registration ceremony: a new passkey, the upgrade of a U2F key to a
passkey, and the import of a U2F registration from an older system."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import constant_time
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AttestedCredentialData,
    CollectedClientData,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
)

from mfad.core.credentials import Ceremony, CeremonyPurpose, DuplicateCredential, NewCredential
from mfad.core.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from mfad.core.model import AuditEvent, Device, DeviceId, Method, User, WebauthnInfo
from mfad.core.verification import Reason, challenge_hash
from mfad.core.webauthn.attestation import AttestationRefused, es256_from_point, usable_key
from mfad.core.webauthn.input import (
    ID_MAX_CHARS,
    MAX_U2F_KEY_HANDLE,
    check_app_id,
    check_name,
    parse_registration,
)
from mfad.core.webauthn.relying_party import CHALLENGE_BYTES, UV, RelyingParty

USER_HANDLE_BYTES = 32  # WebAuthn allows up to 64; random, never the username
_PURPOSE_OF = {False: CeremonyPurpose.REGISTER, True: CeremonyPurpose.UPGRADE}


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


class Registrations(RelyingParty):
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
            user_verification=UV.REQUIRED, challenge=challenge, extensions={"credProps": True})
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
        if not usable_key(credential.public_key, self._allowed_algs):
            return RegistrationRefused("algorithm_not_allowed", "the authenticator's key type is not accepted here")
        try:
            self._server.register_complete({"challenge": websafe_encode(challenge),
                                            "user_verification": UV.REQUIRED}, r)
        except AttestationRefused as exc:
            return RegistrationRefused(exc.reason, exc.message)
        except Exception:  # noqa: BLE001 - fido2 raises ValueError for every failure
            return RegistrationRefused("rejected", "the credential was rejected")
        return None

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
                            public_key=cbor.encode(dict(es256_from_point(public_key))), sign_count=counter,
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


def _aaguid(credential: AttestedCredentialData) -> str | None:
    return str(credential.aaguid) if credential.aaguid else None
