"""Self-service for end users: sign-in that issues user sessions, step-up, and what a session may do.

The transport (gRPC Authentication and Enrollment) calls only this module for
these use cases; the decisions themselves stay with the sign-in, device and
policy services it composes.

Guarantees:
- a session is issued only after the sign-in service decided: a full session
  for an allowed sign-in (its second factor recorded at that moment when one
  was just completed), an enrolment session when the user must bind a first
  device; every issue writes an audit row in the same transaction;
- a session is refused with the same words (``Unauthenticated``) whether it is
  unknown, expired, revoked or presented by another caller than the one it
  was issued to;
- an enrolment session may only list devices and bind a TOTP device or a
  passkey, and only while its user has no active device the policy allows; when
  the policy's ``enrolment_proof`` asked for one at issue, it may bind only after
  presenting it (:mod:`mfad.core.enrolment`) — a password alone binds nothing;
- the same holds for a full session issued without a second factor (``mfa_required``
  ``enrolled`` or ``off``) to a user with no active device the policy allows: it owes
  the policy's ``enrolment_proof`` and binds nothing (no security email either) before
  presenting it;
- with ``self_service = false`` a full session may only look (list its
  devices) and end itself; anything else is ``PermissionDenied``;
- binding the first device with an enrolment session completes the sign-in:
  the device was just proved, so the enrolment session is replaced by a full
  one (its second factor recorded at that moment);
- a session signed in with the security email (an emergency sign-in, see
  :mod:`mfad.core.emergency`) cannot unbind a device unless the policy's
  ``email_recovery`` allows it;
- unbinding and generating recovery codes need a second factor not older than
  the policy's ``sensitive_reauth_seconds`` (``PreconditionFailed`` otherwise);
  :meth:`SelfService.step_up` records a fresh one on the session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from mfad.core import remembered
from mfad.core.addresses import mask_address
from mfad.core.clock import Clock
from mfad.core.devices import DeviceListing, DeviceService, TotpBinding
from mfad.core.enrolment import EnrolmentService, ProofStarted
from mfad.core.emergency import ASK_ADMIN, EmergencySignIns
from mfad.core.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed, Unauthenticated
from mfad.core.model import (
    AuditEvent,
    Device,
    DeviceId,
    EnrolmentProof,
    Method,
    RememberedDevice,
    StaffRole,
    User,
    UserId,
)
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, DeviceStore, RecoverySet, SignInStore, UserStore
from mfad.core.recovery import RecoveryCodes, RecoveryService
from mfad.core.sessions import SessionScope, SessionStore, UserSession, is_token_shaped, new_token, token_hash
from mfad.core.signin import SignInService
from mfad.core.verification import (
    VOUCHED,
    Attempt,
    ChallengeStarted,
    FirstFactor,
    Outcome,
    Password,
    SignInRequest,
    SignInResult,
    VerifyResult,
)

#: The same words for every session refusal: a caller learns nothing about which check failed.
SESSION_REFUSED = "the user session is missing, expired or revoked: sign in again"
#: Who the audit log names for changes a user makes through a session.
SELF_ACTOR = "user"
#: Why an enrolment session may not bind yet, by the proof it owes.
PROOF_OWED = {
    EnrolmentProof.ACCESS_CODE: "first present the enrolment code an administrator issued for you",
    EnrolmentProof.EMAIL_CODE: "first present the code mailed to your email address",
}
MAX_LABEL = 100
_OPERATION = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class Use(StrEnum):
    """What a self-service call does with its session."""

    VIEW = "view"  # list devices
    ENROL = "enrol"  # bind a TOTP device or a passkey (allowed with an enrolment session)
    BIND_EMAIL = "bind_email"  # bind a security email (not with an enrolment session, nor before an owed proof)
    MANAGE = "manage"  # everything else: unbinding, remembered devices, U2F upgrade


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedSession:
    """A new session as its holder sees it once: the clear token is nowhere else."""

    token: str
    scope: SessionScope
    expires_at: datetime
    #: The user's console role at issue (a hint for the portal's link; checked again on every call).
    console_role: StaffRole | None = None
    #: An enrolment session: the proof it must present before binding (None: nothing owed).
    proof_owed: EnrolmentProof | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignIn:
    result: SignInResult
    session: IssuedSession | None = None
    #: When the rotated remembered-device token in ``result`` stops working.
    remembered_expires_at: datetime | None = None
    #: A second factor is owed and the policy lets the user ask to be remembered: for so many days.
    remember_days: int = 0
    #: A second factor is owed and a security email is one of the ways: where a code would go, masked.
    masked_email: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    result: VerifyResult
    session: IssuedSession | None = None
    remembered_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUpStarted:
    """A two-call step-up waiting for its proof."""

    challenge_id: str
    #: What the method shows (WebAuthn request options, or where a code was mailed) and until when.
    started: ChallengeStarted


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUp:
    verified: bool
    verified_at: datetime | None = None
    valid_until: datetime | None = None


def check_operation(operation: str) -> str:
    if not operation:
        return "unspecified"
    if not _OPERATION.fullmatch(operation):
        raise InvalidInput("operation", "must be 1 to 64 lower-case letters, digits, '_', '.' or '-'")
    return operation


class SelfServiceStore(UserStore, DeviceStore, SessionStore, SignInStore, AuditStore, Protocol):
    """The store as the self-service uses it: sessions, the user's devices and remembered devices."""


class SelfService:
    def __init__(self, *, store: SelfServiceStore, clock: Clock, policy: PolicyService, signin: SignInService,
                 devices: DeviceService, recovery: RecoveryService, enrolment: EnrolmentService,
                 session_ttl_seconds: int, emergency: EmergencySignIns | None = None) -> None:
        self._store = store
        self._enrolment = enrolment
        self._emergency = emergency
        self._recovery = recovery
        self._clock = clock
        self._policy = policy
        self._signin = signin
        self._devices = devices
        self._ttl = timedelta(seconds=session_ttl_seconds)

    # --- signing in ------------------------------------------------------------------------
    async def begin(self, username: str, password: str | None, attempt: Attempt, *, caller: str,
                    remembered_token: str | None = None) -> SignIn:
        """The first factor (see ``SignInService.sign_in``; ``password`` None: the caller
        vouches for it), plus the session it earns."""
        first: FirstFactor = VOUCHED if password is None else Password(password)
        result = await self._signin.sign_in(SignInRequest(username=username, first_factor=first, attempt=attempt,
                                                          remembered_token=remembered_token))
        if result.user is None:
            return SignIn(result=result)
        if result.outcome is Outcome.ALLOWED:
            session = await self._issue(result.user, SessionScope.FULL, caller, attempt, second_factor_at=None,
                                        how=result.reason.value, signed_in_with=result.reason.value,
                                        proof_owed=await self._proof_owed_without_device(result.user))
            expires = None
            if result.remembered_token is not None:
                expires = await self._remembered_expiry(result.user, result.remembered_token)
            return SignIn(result=result, session=session, remembered_expires_at=expires)
        if result.outcome is Outcome.ENROLMENT_REQUIRED:
            proof = (await self._policy.current()).enrolment_proof
            session = await self._issue(result.user, SessionScope.ENROLMENT, caller, attempt,
                                        second_factor_at=None, how=result.reason.value,
                                        proof_owed=None if proof is EnrolmentProof.NONE else proof)
            return SignIn(result=result, session=session)
        if result.outcome is Outcome.SECOND_FACTOR_REQUIRED:
            policy = await self._policy.current()
            return SignIn(result=result, remember_days=policy.remember_days if policy.remember_device else 0,
                          masked_email=await self._masked_email(result))
        return SignIn(result=result)

    async def _proof_owed_without_device(self, user: User) -> EnrolmentProof | None:
        """The proof a full session issued without a second factor owes (``mfa_required`` is
        ``enrolled`` or ``off``): the policy's ``enrolment_proof`` while the user has no active
        device the policy allows — else a password alone could bind the first device."""
        policy = await self._policy.current()
        if policy.enrolment_proof is EnrolmentProof.NONE:
            return None
        devices = await self._store.load_devices(user.id)
        if any(d.is_active and policy.allows(d.method) for d in devices):
            return None
        return policy.enrolment_proof

    async def complete(self, challenge_id: str, method: Method, response: str, attempt: Attempt, *, caller: str,
                       remember: bool = False, remember_label: str = "") -> Completion:
        """The second factor (see ``SignInService.complete``); accepted → a full session."""
        result = await self._signin.complete(challenge_id, method, response, attempt, remember=remember,
                                             remember_label=remember_label[:MAX_LABEL])
        if not result.accepted or result.user is None:
            return Completion(result=result)
        now = self._clock.now()
        session = await self._issue(result.user, SessionScope.FULL, caller, attempt, second_factor_at=now,
                                    how=f"second_factor:{method}", signed_in_with=method.value)
        expires = None
        if result.remembered_token is not None:
            expires = now + timedelta(days=(await self._policy.current()).remember_days)
        return Completion(result=result, session=session, remembered_expires_at=expires)

    async def step_up(self, *, token: str | None, username: str, code: str, operation: str, attempt: Attempt,
                      caller: str) -> StepUp:
        """A fresh typed second factor for a sensitive operation. With a session, the session's
        user steps up and the session records it; without one, ``username`` does."""
        operation = check_operation(operation)
        session, username = await self._stepping_up(token, username, caller)
        result = await self._signin.sign_in(SignInRequest(username=username, first_factor=VOUCHED, code=code,
                                                          code_required=True, attempt=attempt))
        if not result.accepted or result.user is None:
            return StepUp(verified=False)
        return await self._stepped_up(session, result.user, Method.TOTP, operation, attempt)

    async def start_step_up(self, *, token: str | None, username: str, method: Method, operation: str,
                            attempt: Attempt, caller: str) -> StepUpStarted | None:
        """First call of a two-call step-up (passkey, U2F key, email code): a challenge for
        that one method of the user, started (WebAuthn options made, or a code mailed).
        None when refused (unknown, locked or disabled user, no such device): the same for
        every reason."""
        check_operation(operation)
        _, username = await self._stepping_up(token, username, caller)
        opened = await self._signin.open_step_up(username, method, attempt)
        if opened.challenge_id is None:
            return None
        started = await self._signin.start_challenge(opened.challenge_id, method, attempt)
        return StepUpStarted(challenge_id=opened.challenge_id, started=started)

    async def finish_step_up(self, *, token: str | None, username: str, challenge_id: str, method: Method,
                             response: str, operation: str, attempt: Attempt, caller: str) -> StepUp:
        """Second call: the proof for the challenge ``start_step_up`` opened. The challenge
        must be the stepping-up user's own."""
        operation = check_operation(operation)
        session, username = await self._stepping_up(token, username, caller)
        result = await self._signin.complete(challenge_id, method, response, attempt)
        if not result.accepted or result.user is None:
            return StepUp(verified=False)
        if result.user.username != username:
            return StepUp(verified=False)  # another user's challenge proves nothing about this one
        return await self._stepped_up(session, result.user, method, operation, attempt)

    async def _stepping_up(self, token: str | None, username: str, caller: str) -> tuple[UserSession | None, str]:
        """Who steps up: the session's user (the session must be a full one), or ``username``."""
        if token is None:
            return None, username
        session = await self.resolve(token, caller)
        if session.scope is not SessionScope.FULL:
            raise PermissionDenied("an enrolment session cannot step up: sign in again")
        if username and username != session.username:
            raise InvalidInput("username", "leave empty when the call carries a user session")
        return session, session.username

    async def _stepped_up(self, session: UserSession | None, user: User, method: Method, operation: str,
                          attempt: Attempt) -> StepUp:
        now = self._clock.now()
        audit = [AuditEvent(event="step_up", outcome="ok", user_id=user.id, username=user.username,
                            method=method.value, protocol=attempt.protocol, source=attempt.source,
                            actor=attempt.client, detail=f"operation={operation} session={session is not None}")]
        if session is not None:
            if not await self._store.update_session_second_factor(session.id_hash, now, audit, method.value):
                raise Unauthenticated(SESSION_REFUSED)  # expired between the check and now
        else:
            await self._store.append_audit(now, audit)
        window = (await self._policy.current()).sensitive_reauth_seconds
        return StepUp(verified=True, verified_at=now, valid_until=now + timedelta(seconds=window))

    # --- sessions --------------------------------------------------------------------------
    async def authorize(self, token: str | None, caller: str, use: Use) -> UserSession:
        """The live session ``token`` names, if it may be used for ``use`` now."""
        session = await self.resolve(token, caller)
        policy = await self._policy.current()
        if session.scope is SessionScope.ENROLMENT:
            if use is Use.MANAGE or use is Use.BIND_EMAIL:
                raise PermissionDenied("an enrolment session may only bind a first passkey or TOTP device")
            devices = await self._store.load_devices(session.user_id)
            if any(d.is_active and policy.allows(d.method) for d in devices):
                raise Unauthenticated(SESSION_REFUSED)  # enrolment is over: sign in with the new device
            if use is Use.ENROL and session.proof_owed is not None:
                raise PermissionDenied(PROOF_OWED[session.proof_owed])
            return session
        if not policy.self_service and use is not Use.VIEW:
            raise PermissionDenied("the MFA policy does not allow users to manage their own devices")
        if use in (Use.ENROL, Use.BIND_EMAIL) and session.proof_owed is not None:
            raise PermissionDenied(PROOF_OWED[session.proof_owed])  # a security email is a factor too
        return session

    async def _masked_email(self, result: SignInResult) -> str:
        """The security email a code would go to, masked; "" when email is not offered. Shown only
        after the first factor passed, like the answer to starting that challenge."""
        if Method.EMAIL not in result.methods or result.user is None:
            return ""
        for d in await self._store.load_devices(result.user.id):
            if d.method is Method.EMAIL and d.is_active and d.email:
                return mask_address(d.email)
        return ""

    async def end(self, token: str | None, caller: str, attempt: Attempt) -> None:
        """Sign-out: the session's token is refused from now on."""
        session = await self.resolve(token, caller)
        await self._store.delete_session(session.id_hash, self._clock.now(), [AuditEvent(
            event="session_ended", outcome="ok", user_id=session.user_id, username=session.username,
            protocol=attempt.protocol, source=attempt.source, actor=caller, detail=f"scope={session.scope}")])

    async def finish_enrolment(self, session: UserSession, attempt: Attempt,
                               method: Method | None = None) -> IssuedSession | None:
        """After a first device was bound with an enrolment session: the full session the sign-in
        has now earned (the enrolment session ends). None for a full session (nothing changes).
        ``method``: the bound device's, proved by the binding — the session is signed in with it."""
        if session.scope is not SessionScope.ENROLMENT:
            return None
        user = await self._store.load_user(session.user_id)
        if user is None:
            raise Unauthenticated(SESSION_REFUSED)
        issued = await self._issue(user, SessionScope.FULL, session.caller, attempt,
                                   second_factor_at=self._clock.now(), how="enrolment",
                                   signed_in_with=method.value if method is not None else "enrolment")
        await self._store.delete_session(session.id_hash, self._clock.now(), [])
        return issued

    async def resolve(self, token: str | None, caller: str) -> UserSession:
        if token is None or not is_token_shaped(token):
            raise Unauthenticated(SESSION_REFUSED)
        session = await self._store.load_session(token_hash(token))
        if session is None or session.caller != caller or session.expires_at <= self._clock.now():
            raise Unauthenticated(SESSION_REFUSED)
        return session

    async def _issue(self, user: User, scope: SessionScope, caller: str, attempt: Attempt, *,
                     second_factor_at: datetime | None, how: str,
                     proof_owed: EnrolmentProof | None = None,
                     signed_in_with: str | None = None) -> IssuedSession:
        token, id_hash = new_token()
        now = self._clock.now()
        second_factor_with = signed_in_with if second_factor_at is not None else None
        session = UserSession(id_hash=id_hash, user_id=user.id, username=user.username, scope=scope, caller=caller,
                              created_at=now, expires_at=now + self._ttl, second_factor_at=second_factor_at,
                              proof_owed=proof_owed,
                              signed_in_with=signed_in_with if scope is SessionScope.FULL else None,
                              second_factor_with=second_factor_with)
        owed = f" proof_owed={proof_owed}" if proof_owed is not None else ""
        audit = [AuditEvent(
            event="session_created", outcome="ok", user_id=user.id, username=user.username,
            protocol=attempt.protocol, source=attempt.source, actor=caller,
            detail=f"scope={scope} via={how}{owed}")]
        notice = None
        emergency = self._emergency if session.is_emergency and scope is SessionScope.FULL else None
        if emergency is not None:
            devices = await self._store.load_devices(user.id)
            policy = await self._policy.current()
            audit.append(emergency.audit(user, devices, attempt, policy.email_recovery))
            notice = emergency.notice(user, devices, attempt, now)
        await self._store.insert_session(session, audit, notice)
        if emergency is not None:
            emergency.done(notice is not None)
        return IssuedSession(token=token, scope=scope, expires_at=session.expires_at,
                             console_role=user.role if scope is SessionScope.FULL else None, proof_owed=proof_owed)

    # --- the proof before a first device ----------------------------------------------------
    async def start_enrolment_proof(self, token: str | None, caller: str, attempt: Attempt) -> ProofStarted:
        """What the enrolment session owes (an email code is mailed now)."""
        return await self._enrolment.start(await self.resolve(token, caller), attempt)

    async def present_enrolment_proof(self, token: str | None, caller: str, code: str, attempt: Attempt) -> bool:
        """The owed proof; True: the session may now bind a first device. Every refusal is False."""
        return await self._enrolment.present(await self.resolve(token, caller), code, attempt)

    async def _remembered_expiry(self, user: User, token: str) -> datetime | None:
        parsed = remembered.parse(token)
        if parsed is None:
            return None
        for r in await self._store.list_remembered(user.id, self._clock.now()):
            if r.series == parsed.series:
                return r.expires_at
        return None

    # --- what a session may do ---------------------------------------------------------------
    async def list_devices(self, session: UserSession) -> DeviceListing:
        return await self._devices.list(session.username)

    async def begin_totp(self, session: UserSession, name: str) -> TotpBinding:
        return await self._devices.begin_totp(session.username, name=name, actor=SELF_ACTOR)

    async def confirm_totp(self, session: UserSession, device_id: DeviceId, code: str) -> tuple[Device, DeviceListing]:
        device = await self._devices.confirm_totp(session.username, device_id, code, actor=SELF_ACTOR)
        return device, await self._devices.list(session.username)

    async def fresh_second_factor(self, session: UserSession, doing: str) -> datetime:
        """When the session's second factor was given, if recent enough for a sensitive change."""
        window = (await self._policy.current()).sensitive_reauth_seconds
        at = session.second_factor_at
        if at is None or (self._clock.now() - at).total_seconds() > window:
            raise PreconditionFailed(f"{doing} needs a second factor within the last {window} s: "
                                     "step up with VerifySensitive first")
        return at

    async def unbind(self, session: UserSession, device_id: DeviceId) -> DeviceListing:
        if session.is_emergency and not (await self._policy.current()).email_recovery:
            raise PermissionDenied(ASK_ADMIN)
        at = await self.fresh_second_factor(session, "unbinding")
        await self._devices.unbind(session.username, device_id, actor=SELF_ACTOR, as_admin=False,
                                   second_factor_at=at)
        return await self._devices.list(session.username)

    async def generate_recovery_codes(self, session: UserSession, attempt: Attempt) -> RecoveryCodes:
        """A new set of recovery codes (replacing the old one): a sensitive change."""
        await self.fresh_second_factor(session, "generating recovery codes")
        return await self._recovery.generate(session.username, attempt, actor=SELF_ACTOR)

    async def recovery_status(self, session: UserSession) -> RecoverySet | None:
        return await self._recovery.status(session.username)

    async def list_remembered(self, session: UserSession) -> list[RememberedDevice]:
        return await self._store.list_remembered(session.user_id, self._clock.now())

    async def revoke_remembered(self, session: UserSession, series: str | None) -> int:
        """One remembered device (by its series) or, with None, all of the user's."""
        return await revoke_remembered(self._store, self._clock.now(), session.user_id, session.username, series,
                                       actor=SELF_ACTOR)


async def revoke_remembered(store: SignInStore, now: datetime, user_id: UserId, username: str, series: str | None, *,
                            actor: str | None) -> int:
    """Revoke one remembered device (series) of a user, or all of them (None)."""

    def audit(count: int) -> list[AuditEvent]:
        return [AuditEvent(event="remembered_revoked", outcome="ok", user_id=user_id, username=username, actor=actor,
                           detail=f"series={'all' if series is None else series} count={count}")]

    count = await store.delete_remembered(user_id, series, now, audit)
    if series is not None and count == 0:
        raise NotFound("no such remembered device")
    return count
