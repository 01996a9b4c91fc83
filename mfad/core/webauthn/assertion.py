"""The WebAuthn sign-in ceremony (assertions) and the verifiers the sign-in service
calls for passkeys and legacy U2F keys."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives import constant_time
from fido2.utils import sha256, websafe_encode
from fido2.webauthn import CollectedClientData

from mfad.core.credentials import Ceremony, CeremonyPurpose, StoredCredential
from mfad.core.errors import PreconditionFailed
from mfad.core.model import AuditEvent, Challenge, Method, UserId
from mfad.core.verification import ChallengeStarted, MethodOutcome, Reason, VerifyContext
from mfad.core.webauthn.attestation import cose_key
from mfad.core.webauthn.input import ParsedAssertion, parse_assertion
from mfad.core.webauthn.relying_party import CHALLENGE_BYTES, UV, RelyingParty


class SignIns(RelyingParty):
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
        uv = UV.REQUIRED if method is Method.PASSKEY else UV.DISCOURAGED
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
            state=json.dumps({"method": Method.PASSKEY.value, "uv": UV.REQUIRED.value}),
            created_at=now, expires_at=expires), audit)
        return expires

    async def start_usernameless(self, id_hash: str, now: datetime) -> str | None:
        ceremony = await self._store.load_ceremony(id_hash)
        if ceremony is None or ceremony.purpose is not CeremonyPurpose.USERNAMELESS or now >= ceremony.expires_at:
            return None
        options, _ = self._server.authenticate_begin(None, user_verification=UV.REQUIRED,
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
        if parsed.user_handle is not None:
            handle = await self._store.load_user_handle(ctx.user.id)
            if handle is None or not constant_time.bytes_eq(handle, parsed.user_handle):
                return _refused(Reason.UNKNOWN_CREDENTIAL)
        reason = self._check_assertion(parsed, ceremony.challenge, credential,
                                       uv_required=state.get("uv") == UV.REQUIRED.value)
        if reason is not None:
            return _refused(reason)
        auth = parsed.authenticator_data
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

    def _check_assertion(self, a: ParsedAssertion, challenge: bytes, credential: StoredCredential, *,
                         uv_required: bool) -> Reason | None:
        """Every check of an assertion (WebAuthn §7.2 steps 11-21, as fido2's
        ``authenticate_complete`` makes them), the signature last."""
        cd = a.client_data
        auth = a.authenticator_data
        if cd.type != CollectedClientData.TYPE.GET:
            return Reason.BAD_CLIENT_DATA
        if cd.origin not in self._origins or cd.cross_origin:
            return Reason.WRONG_ORIGIN
        if not constant_time.bytes_eq(cd.challenge, challenge):
            return Reason.WRONG_CHALLENGE
        # The signed rpIdHash chooses the relying party: the RP id, or a U2F key's AppID.
        if not (constant_time.bytes_eq(auth.rp_id_hash, self._rp_hash)
                or credential.app_id and constant_time.bytes_eq(auth.rp_id_hash,
                                                                sha256(credential.app_id.encode()))):
            return Reason.WRONG_RP_ID
        if not auth.is_user_present():
            return Reason.USER_NOT_PRESENT
        if uv_required and not auth.is_user_verified():
            return Reason.USER_NOT_VERIFIED
        try:
            cose_key(credential.public_key).verify(auth + cd.hash, a.signature)
        except Exception:  # noqa: BLE001 - everything else was checked above: the signature (or its form)
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


def _signin_ceremony(challenge_id_hash: str, method: Method) -> str:
    """A sign-in ceremony is bound to its challenge and method."""
    return f"{challenge_id_hash}:{method.value}"


def _refused(reason: Reason) -> MethodOutcome:
    return MethodOutcome(accepted=False, reason=reason)


# --- the verifiers the sign-in service calls -----------------------------------------------------
class _AssertionVerifier:
    """A second factor proved by an assertion of one of the user's ``method`` credentials."""

    method: Method

    def __init__(self, service: SignIns) -> None:
        self._service = service

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        return await self._service.start_signin(ctx, challenge, self.method)

    async def verify(self, ctx: VerifyContext, response: str) -> MethodOutcome:
        return await self._service.verify_signin(ctx, response, self.method)


class PasskeyVerifier(_AssertionVerifier):
    """Passkeys: UV required; also answers usernameless sign-in (discoverable credentials)."""

    method = Method.PASSKEY

    async def open_usernameless(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> datetime:
        return await self._service.open_usernameless(id_hash, now, audit)

    async def start_usernameless(self, id_hash: str, now: datetime) -> ChallengeStarted | None:
        options = await self._service.start_usernameless(id_hash, now)
        if options is None:
            return None
        return ChallengeStarted(method=self.method, shown=options, expires_at=now + self._service.ceremony_ttl)

    async def identify(self, id_hash: str, response: str, now: datetime) -> UserId | Reason:
        return await self._service.identify(id_hash, response, now)


class U2fVerifier(_AssertionVerifier):
    """Legacy U2F keys: assertions under their AppID (the ``appid`` extension), UP only."""

    method = Method.U2F
