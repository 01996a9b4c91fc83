"""The sign-in decision: the one entry point every transport calls.

``sign_in`` takes a :class:`SignInRequest` — the first factor (a password, a password
with the code appended, or the caller's word that it checked it) and, when the
transport received one in the same message, a typed code — and answers a
:class:`SignInResult`: allowed / second factor required (a challenge opened) /
enrolment required / refused. ``complete`` verifies a second factor against the
challenge ``sign_in`` opened; ``start_challenge`` prepares a method for it (mails a
code, makes WebAuthn options).

Where new pieces plug in:
- a first-factor source (LDAP, an upstream RADIUS server) is a
  :class:`~mfad.core.first_factor.FirstFactorCheck` handed to the service;
- a second-factor method (e.g. out-of-band approval) is a
  :class:`~mfad.core.verification.SecondFactorVerifier` passed to ``register``: a challenge offers every
  registered method the policy allows and the user holds.

Guarantees:
- every outcome writes one audit row, in the same transaction as the state it
  changes (replay guard, counters, challenge, remembered device);
- refusals look identical to the caller whatever the reason (unknown user,
  wrong password, wrong code, replay, lock-out); the reason is in ``reason``
  for the audit log and metrics only;
- an unknown user costs the same work as a known one (dummy argon2 and TOTP
  computations) and touches no real user's counters;
- a response's shape is checked once per path, before anything is read;
- when the store cannot be written, ``Unavailable`` propagates: never an accept.
"""
from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mfad.core.settings import LimitSettings, TotpSettings
from mfad.core import remembered, totp
from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput, NotFound, PreconditionFailed
from mfad.core.decisions import logged
from mfad.core.keyring import Keyring
from mfad.core.limits import Block, LimitRules
from mfad.core.model import (
    ENROLMENT_METHODS,
    AuditEvent,
    Challenge,
    Device,
    LimitState,
    Method,
    MfaRequired,
    Policy,
    RememberedDevice,
    User,
    UserId,
)
from mfad.core.directory import DirectoryEntry, DirectoryReason
from mfad.core.first_factor import FirstFactorCheck, LocalPasswordCheck
from mfad.core.passwords import PasswordHasher, check_password_input
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, CoreMetrics, DirectoryUserStore, LimitChange, SignInStore, Subject
from mfad.core.totp_verifier import TotpVerifier, dummy_check
from mfad.core.usernames import UsernameRules
from mfad.core.verification import (
    CHALLENGE_ID_BYTES,
    ONE_CALL_METHODS,
    TYPED_CODE_METHODS,
    Attempt,
    ChallengeStarted,
    Outcome,
    Password,
    PasswordThenCode,
    Pending,
    Reason,
    SecondFactorVerifier,
    SignInRequest,
    SignInResult,
    UsernamelessVerifier,
    VerifyContext,
    VerifyResult,
    Vouched,
    challenge_hash,
)

#: Not a failure: the sign-in waits for a decision made elsewhere (no try spent, nothing
#: counted), or its approval was replaced by a newer sign-in of the same user.
_WAITING = frozenset({Reason.APPROVAL_PENDING, Reason.APPROVAL_UNKNOWN})

_DIRECTORY_GONE = {DirectoryReason.UNKNOWN_USER: Reason.DIRECTORY_UNKNOWN,
                   DirectoryReason.DISABLED: Reason.DIRECTORY_DISABLED}

_BLOCK_REASON = {Block.LOCKED: Reason.LOCKED, Block.HARD_LOCKED: Reason.HARD_LOCKED,
                 Block.SOURCE_BACKOFF: Reason.SOURCE_BACKOFF, Block.SOURCE_RATE: Reason.SOURCE_RATE}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Passed:
    """The first factor passed and a second factor is owed: with what."""

    now: datetime
    policy: Policy
    usable: frozenset[Method]
    #: The subject as the first factor left it (a directory user just provisioned).
    subject: Subject
    #: The allow-listed reply attributes of an upstream RADIUS first factor.
    reply: tuple[tuple[str, bytes], ...] = ()



class SignInServiceStore(SignInStore, AuditStore, DirectoryUserStore, Protocol):
    """The store as the sign-in service uses it."""


class SignInService:
    def __init__(self, *, store: SignInServiceStore, keyring: Keyring, clock: Clock, passwords: PasswordHasher,
                 policy: PolicyService, totp_settings: TotpSettings, limits: LimitSettings,
                 metrics: CoreMetrics, usernames: UsernameRules | None = None,
                 first_factor: FirstFactorCheck | None = None) -> None:
        self._store = store
        self._first_factor_check = first_factor or LocalPasswordCheck(passwords)
        self._usernames = usernames or UsernameRules()
        self._keyring = keyring
        self._clock = clock
        self._policy = policy
        self._totp = totp_settings
        self._limits = limits
        self._rules = LimitRules(limits)
        self._metrics = metrics
        self._verifiers: dict[Method, SecondFactorVerifier] = {}
        self._usernameless: UsernamelessVerifier | None = None
        self.register(TotpVerifier(store=store, keyring=keyring, window=totp_settings.window))

    def register(self, verifier: SecondFactorVerifier) -> None:
        self._verifiers[verifier.method] = verifier

    @property
    def methods(self) -> frozenset[Method]:
        """Methods this service can verify (the rest are bound but not yet usable)."""
        return frozenset(self._verifiers)

    # --- the sign-in ----------------------------------------------------------------------
    @logged
    async def sign_in(self, request: SignInRequest) -> SignInResult:
        """The sign-in use case for every transport; :class:`SignInRequest` says which path."""
        first, attempt = request.first_factor, request.attempt
        if isinstance(first, Vouched) and not request.username and request.code is None \
                and not request.code_required and self._usernameless is not None:
            return await self._begin_usernameless(attempt)
        username = self._usernames.normalize(request.username)
        if request.code_required:
            return await self._check_code(username, request)
        if isinstance(first, PasswordThenCode) and request.code is not None:
            raise InvalidInput("code", "comes appended to the password here")
        typed = first.text if isinstance(first, Password) else first.typed if isinstance(first, PasswordThenCode) \
            else None
        if typed is not None:
            check_password_input(typed)
        started = time.perf_counter()
        subject = await self._store.load_subject(username, attempt.source)
        password, code = typed, request.code
        if isinstance(first, PasswordThenCode):
            password, code = split_appended(first.typed, _totp_digits(subject.devices))
        passed = await self._first_factor(subject, username, password, attempt, started,
                                          remembered_token=request.remembered_token, station=request.station)
        if isinstance(passed, SignInResult):
            if passed.outcome is Outcome.REFUSED and code is not None and password is None:
                self._dummy_totp_work(code, self._clock.now())  # the work a known user's code costs
            return passed
        if code is None:
            return await self._owe_second_factor(passed.subject, attempt, passed, request)
        return await self._sign_in_with_code(passed.subject, code, attempt, passed, started, request.station)

    async def _owe_second_factor(self, subject: Subject, attempt: Attempt, passed: _Passed,
                                 request: SignInRequest) -> SignInResult:
        """The first factor passed and no code came with it: a challenge for the second
        factor, or for binding a first device when the user has none usable."""
        ttl, tries = request.challenge_ttl, request.challenge_tries
        if not passed.usable:
            methods = frozenset(m for m in ENROLMENT_METHODS if passed.policy.allows(m))
            return await self._open_challenge(subject, attempt, passed.now, "enrol", methods,
                                              Outcome.ENROLMENT_REQUIRED, Reason.NO_DEVICE, ttl, tries)
        return await self._open_challenge(subject, attempt, passed.now, "signin", passed.usable,
                                          Outcome.SECOND_FACTOR_REQUIRED, Reason.SECOND_FACTOR, ttl, tries,
                                          reply=passed.reply)

    async def _first_factor(self, subject: Subject, username: str, password: str | None, attempt: Attempt,
                            started: float, *,
                            remembered_token: str | None, station: str | None) -> SignInResult | _Passed:
        """The first factor and everything that may end the sign-in before a second one:
        a final result (refused, allowed without a second factor), or what the second
        factor may use."""
        now = self._clock.now()
        user = subject.user
        verdict = None
        if password is not None:
            verdict = await self._first_factor_check.check(username, user, password,
                                                           lane=attempt.client or attempt.protocol,
                                                           client=attempt.client, protocol=attempt.protocol)
            ok = verdict.ok
            if ok and verdict.directory is not None and verdict.entry is not None:
                subject = await self._provisioned(subject, username, verdict.directory, verdict.entry, attempt, now)
                user = subject.user
        else:
            ok = user is not None
        policy = await self._policy.effective(user, attempt.client)
        reply = verdict.reply if verdict is not None and ok else ()

        refusal = self._refusal(subject, now, password_ok=ok)
        if refusal is Reason.WRONG_PASSWORD and verdict is not None and verdict.reason in _DIRECTORY_GONE:
            refusal = _DIRECTORY_GONE[verdict.reason]
        if refusal is not None:
            if refusal in (Reason.WRONG_PASSWORD, Reason.UNKNOWN_USER):
                await self._fail(subject, attempt, now, None, refusal, None, None)
            else:  # blocked or disabled: refused before anything was proven, nothing to count
                await self._store.append_audit(now, [self._event("signin", refusal, subject, attempt)])
            self._metrics.verification(attempt.protocol, "password", "refused", time.perf_counter() - started)
            return SignInResult(outcome=Outcome.REFUSED, reason=refusal, user=None)
        assert user is not None

        usable = self._usable_methods(subject.devices, policy)
        enrolled = any(d.is_active for d in subject.devices)
        if policy.mfa_required is MfaRequired.OFF or (policy.mfa_required is MfaRequired.ENROLLED
                                                     and not enrolled):
            reason = Reason.MFA_OFF if policy.mfa_required is MfaRequired.OFF else Reason.NOT_ENROLLED_ALLOWED
            await self._store.append_audit(now, [self._event("signin", reason, subject, attempt, outcome="allowed")])
            return SignInResult(outcome=Outcome.ALLOWED, reason=reason, user=user, first_factor_reply=reply)

        if remembered_token and policy.remember_device and usable:
            rotated = await self._use_remembered(user, remembered_token, attempt, now)
            if rotated is not None:
                await self._store.append_audit(now, [self._event("signin", Reason.REMEMBERED, subject, attempt,
                                                                 outcome="allowed")])
                return SignInResult(outcome=Outcome.ALLOWED, reason=Reason.REMEMBERED, user=user,
                                    remembered_token=rotated, first_factor_reply=reply)

        if station and policy.remember_device and usable:
            series = remembered.station_series(user.id, attempt.client, station)
            event = self._event("signin", Reason.REMEMBERED, subject, attempt, outcome="allowed")
            if await self._store.update_remembered_station(user.id, series, now, [event]):
                return SignInResult(outcome=Outcome.ALLOWED, reason=Reason.REMEMBERED, user=user,
                                    first_factor_reply=reply)
        return _Passed(now=now, policy=policy, usable=usable, subject=subject, reply=reply)

    async def _provisioned(self, subject: Subject, username: str, directory: str, entry: DirectoryEntry,
                           attempt: Attempt, now: datetime) -> Subject:
        """The subject with its record: created from the directory's entry when the user has
        none (just-in-time provisioning, audited), its profile and groups refreshed when
        they changed. The profile email is only a profile field, never a security email."""
        user = subject.user
        if user is None:
            def audit(user_id: UserId) -> list[AuditEvent]:
                return [AuditEvent(event="user_provisioned", outcome="ok", user_id=user_id, username=username,
                                   protocol=attempt.protocol, source=attempt.source, actor=attempt.client,
                                   detail=f"directory={directory}")]

            user, _ = await self._store.provision_user(username, directory, entry, now, audit)
        elif (user.display_name, user.profile_email, user.groups) != (entry.display_name, entry.email, entry.groups) \
                and user.directory == directory:
            await self._store.update_directory_profile(user.id, entry, now)
        # This sign-in's policy follows the groups the directory just told.
        return dataclasses.replace(subject, user=dataclasses.replace(user, groups=entry.groups))

    def _refusal(self, subject: Subject, now: datetime, *, password_ok: bool) -> Reason | None:
        if subject.user is None:
            return Reason.UNKNOWN_USER
        # A blocked attempt proves nothing either way, so it is refused before the
        # password result counts: wrong passwords cannot extend a running lock-out.
        block = self._rules.blocked(subject.limits, subject.bucket, now)
        if block is not None:
            return _BLOCK_REASON[block]
        if not password_ok:
            return Reason.WRONG_PASSWORD
        if subject.user.disabled:
            return Reason.DISABLED
        return None

    def _usable_methods(self, devices: Sequence[Device], policy: Policy) -> frozenset[Method]:
        usable = frozenset(d.method for d in devices
                           if d.is_active and policy.allows(d.method) and d.method in self._verifiers)
        # Approval is proven with a passkey: on for every user who can use one.
        if Method.PASSKEY in usable and Method.APPROVAL in self._verifiers and policy.allows(Method.APPROVAL):
            usable |= {Method.APPROVAL}
        return usable

    async def _open_challenge(self, subject: Subject, attempt: Attempt, now: datetime, purpose: str,
                              methods: frozenset[Method], outcome: Outcome, reason: Reason, ttl: int | None,
                              tries: int | None, *, reply: tuple[tuple[str, bytes], ...] = ()) -> SignInResult:
        assert subject.user is not None
        challenge_id = secrets.token_urlsafe(CHALLENGE_ID_BYTES)
        expires = now + timedelta(seconds=ttl or self._limits.challenge_ttl_seconds)
        challenge = Challenge(id_hash=challenge_hash(challenge_id), user_id=subject.user.id, purpose=purpose,
                              methods=methods, created_at=now, expires_at=expires,
                              tries_left=tries or self._limits.challenge_tries, source=attempt.source,
                              protocol=attempt.protocol, first_factor_reply=reply)
        await self._store.insert_challenge(challenge, [self._event("signin", reason, subject, attempt,
                                                                   outcome=outcome.value)])
        return SignInResult(outcome=outcome, reason=reason, user=subject.user, challenge_id=challenge_id,
                            methods=methods, expires_at=expires)

    async def _use_remembered(self, user: User, token_text: str, attempt: Attempt, now: datetime) -> str | None:
        parsed = remembered.parse(token_text)
        if parsed is None:
            return None
        new_token, new_hash = remembered.next_token(parsed.series, parsed.counter + 1)

        def theft(user_id: UserId) -> Sequence[AuditEvent]:
            return [AuditEvent(event="remembered_device", outcome="revoked", user_id=user_id, username=user.username,
                               protocol=attempt.protocol, source=attempt.source,
                               reason="stale token on a live series: copied token, series revoked")]

        result = await self._store.rotate_remembered(user.id, parsed.series, parsed.counter,
                                                     remembered.token_hash(parsed.secret), new_hash, now, theft)
        if result.user_id is None or result.stolen:
            return None
        return str(new_token)

    # --- step 2 -------------------------------------------------------------------------
    @logged
    async def complete(self, challenge_id: str, method: Method, response: str, attempt: Attempt, *,
                       remember: bool = False, remember_label: str = "",
                       station: str | None = None) -> VerifyResult:
        """Verify the second factor owed by ``challenge_id``.

        With ``station`` (see ``SignInRequest.station``) and a policy that allows remembering, a success
        also remembers that station for the policy's days, in the same transaction."""
        if not challenge_id or len(challenge_id) > 64:
            raise InvalidInput("challenge_id", "is not a challenge id")
        _check_response(method, response)
        started = time.perf_counter()
        id_hash = challenge_hash(challenge_id)
        challenge = await self._store.load_challenge(id_hash)
        if challenge is None and self._usernameless is not None and method is self._usernameless.method:
            return await self._complete_usernameless(id_hash, response, attempt, started, remember=remember,
                                                     remember_label=remember_label)
        now = self._clock.now()
        if challenge is None or challenge.consumed or challenge.purpose != "signin":
            await self._audit_refusal(challenge, Reason.NO_CHALLENGE, method, attempt, now)
            return self._refused(Reason.NO_CHALLENGE, method, attempt, started)
        if now >= challenge.expires_at:
            await self._audit_refusal(challenge, Reason.EXPIRED, method, attempt, now)
            return self._refused(Reason.EXPIRED, method, attempt, started)
        subject = await self._store.load_subject(challenge.user_id, attempt.source)
        if subject.user is None or method not in challenge.methods:
            reason = Reason.METHOD_NOT_OFFERED if subject.user else Reason.NO_CHALLENGE
            await self._fail(subject, attempt, now, method, reason, None, id_hash)
            return self._refused(reason, method, attempt, started, challenge.tries_left - 1)
        pending = Pending(challenge_hash=id_hash)
        policy = await self._policy.effective(subject.user, attempt.client)
        if remember and policy.remember_device:
            self._prepare_remember(pending, subject.user, now, policy, remember_label or attempt.protocol)
        elif station and policy.remember_device:
            self._prepare_station(pending, subject.user, now, policy, attempt, station)
        result = await self._verify(subject, method, response, attempt, now, pending, started)
        if not result.accepted:
            spent = 0 if result.reason in _WAITING else 1
            return VerifyResult(accepted=False, reason=result.reason,
                                tries_left=max(0, challenge.tries_left - spent))
        if challenge.first_factor_reply:
            return dataclasses.replace(result, first_factor_reply=challenge.first_factor_reply)
        return result

    async def _check_code(self, username: str, request: SignInRequest) -> SignInResult:
        """``code_required``: a typed second factor without a challenge, the caller vouching for
        the first factor. Checked whatever the policy says; a wrong code is one failure."""
        code, method, attempt = request.code, request.method, request.attempt
        if not isinstance(request.first_factor, Vouched):
            raise InvalidInput("password", "a one-call code check takes no password: the caller checked it")
        if method not in ONE_CALL_METHODS:
            raise InvalidInput("method", "only TOTP and recovery codes can be checked in one call")
        if code is None:
            raise InvalidInput("code", "must not be empty")
        _check_response(method, code)
        started = time.perf_counter()
        subject = await self._store.load_subject(username, attempt.source)
        now = self._clock.now()
        if subject.user is None:
            self._dummy_totp_work(code, now)
            await self._fail(subject, attempt, now, method, Reason.UNKNOWN_USER, code, None)
            return self._refused_sign_in(self._refused(Reason.UNKNOWN_USER, method, attempt, started))
        verified = await self._verify(subject, method, code, attempt, now, Pending(challenge_hash=None), started)
        return self._as_sign_in(verified)

    async def _sign_in_with_code(self, subject: Subject, code: str, attempt: Attempt, passed: _Passed,
                                 started: float, station: str | None) -> SignInResult:
        """The first factor passed and a TOTP code came with it: verify it, no challenge."""
        user = subject.user
        assert user is not None
        if Method.TOTP not in passed.usable:
            enrol = not passed.usable
            outcome = Outcome.ENROLMENT_REQUIRED if enrol else Outcome.SECOND_FACTOR_REQUIRED
            reason = Reason.NO_DEVICE if enrol else Reason.SECOND_FACTOR
            methods = (frozenset(m for m in ENROLMENT_METHODS if passed.policy.allows(m)) if enrol
                       else passed.usable)
            await self._store.append_audit(passed.now, [self._event("signin", reason, subject, attempt,
                                                                    outcome=outcome.value)])
            return SignInResult(outcome=outcome, reason=reason, user=user, methods=methods)
        _check_response(Method.TOTP, code)
        pending = Pending(challenge_hash=None)
        if station and passed.policy.remember_device:
            self._prepare_station(pending, user, passed.now, passed.policy, attempt, station)
        result = await self._verify(subject, Method.TOTP, code, attempt, passed.now, pending, started)
        if not result.accepted:
            return SignInResult(outcome=Outcome.REFUSED, reason=result.reason)
        return SignInResult(outcome=Outcome.ALLOWED, reason=Reason.ACCEPTED, user=user, method=Method.TOTP,
                            methods=frozenset({Method.TOTP}), first_factor_reply=passed.reply)

    @staticmethod
    def _as_sign_in(verified: VerifyResult) -> SignInResult:
        if not verified.accepted:
            return SignInService._refused_sign_in(verified)
        return SignInResult(outcome=Outcome.ALLOWED, reason=verified.reason, user=verified.user,
                            method=verified.method, remembered_token=verified.remembered_token)

    @staticmethod
    def _refused_sign_in(verified: VerifyResult) -> SignInResult:
        return SignInResult(outcome=Outcome.REFUSED, reason=verified.reason, method=verified.method)

    def _prepare_station(self, pending: Pending, user: User, now: datetime, policy: Policy, attempt: Attempt,
                         station: str) -> None:
        """Remember ``station`` on success: a remembered device whose series is derived from
        (user, client, station), so it is listed, expires and is revoked like the others."""
        pending.remember = RememberedDevice(
            series=remembered.station_series(user.id, attempt.client, station), user_id=user.id,
            label=f"{attempt.protocol} {attempt.client or '-'}: {station}"[:100], created_at=now,
            expires_at=now + timedelta(days=policy.remember_days), last_used_at=None)
        # No token is ever handed out for a station: the stored hash matches nothing.
        pending.remember_hash = remembered.token_hash(secrets.token_urlsafe(32))

    def _prepare_remember(self, pending: Pending, user: User, now: datetime, policy: Policy, label: str) -> None:
        token, token_hash = remembered.new_series()
        pending.remember = RememberedDevice(series=token.series, user_id=user.id, label=label[:100], created_at=now,
                                            expires_at=now + timedelta(days=policy.remember_days), last_used_at=None)
        pending.remember_hash = token_hash
        pending.remember_token = str(token)

    async def _verify(self, subject: Subject, method: Method, response: str, attempt: Attempt, now: datetime,
                      pending: Pending, started: float) -> VerifyResult:
        """Verify ``response`` (its shape already checked) with ``method``; one failure otherwise."""
        user = subject.user
        assert user is not None
        block = self._rules.blocked(subject.limits, subject.bucket, now)
        if block is None and user.disabled:
            reason: Reason | None = Reason.DISABLED
        else:
            reason = _BLOCK_REASON[block] if block is not None else None
        if reason is not None:
            # Refused before verifying; nothing is counted (the attempt proves nothing).
            self._dummy_totp_work(response, now)
            await self._store.append_audit(now, [self._event("verify", reason, subject, attempt, method=method)])
            if block is not None:
                self._metrics.rate_limited(block.value)
            return self._refused(reason, method, attempt, started)
        policy = await self._policy.effective(subject.user, attempt.client)
        verifier = self._verifiers.get(method)
        if verifier is None or not policy.allows(method):
            await self._fail(subject, attempt, now, method, Reason.METHOD_NOT_OFFERED, None, pending.challenge_hash)
            return self._refused(Reason.METHOD_NOT_OFFERED, method, attempt, started)
        ctx = VerifyContext(subject=subject, attempt=attempt, now=now, policy=policy, pending=pending)
        pending.audit.append(self._event("verify", Reason.ACCEPTED, subject, attempt, method=method,
                                         outcome="accepted"))
        found = await verifier.verify(ctx, response)
        if found.accepted:
            self._metrics.verification(attempt.protocol, method, "accepted", time.perf_counter() - started)
            return VerifyResult(accepted=True, reason=Reason.ACCEPTED, user=user, method=method,
                                remembered_token=pending.remember_token)
        pending.audit.pop()
        if found.reason in _WAITING:
            await self._store.append_audit(now, [self._event("verify", found.reason, subject, attempt, method=method,
                                                             outcome="waiting")])
            return self._refused(found.reason, method, attempt, started)
        await self._fail(subject, attempt, now, method, found.reason, found.repeat_key, pending.challenge_hash)
        return self._refused(found.reason, method, attempt, started)

    async def start_challenge(self, challenge_id: str, method: Method, attempt: Attempt, *,
                              hold_seconds: int | None = None) -> ChallengeStarted:
        """Prepare ``method`` for an open challenge (e.g. mail a code): what to show, the
        response's expiry and (email) when another code may be asked for. Raises NotFound
        for an unknown, spent or expired challenge and PreconditionFailed for a method
        the challenge does not offer. ``hold_seconds``: the approval method in hold mode
        (PermissionDenied when the policy forbids it)."""
        if not challenge_id or len(challenge_id) > 64:
            raise InvalidInput("challenge_id", "is not a challenge id")
        challenge = await self._store.load_challenge(challenge_hash(challenge_id))
        now = self._clock.now()
        if challenge is None and self._usernameless is not None and method is self._usernameless.method:
            started = await self._usernameless.start_usernameless(challenge_hash(challenge_id), now)
            if started is None:
                raise NotFound("challenge not found or expired")
            return started
        if challenge is None or challenge.consumed or now >= challenge.expires_at:
            raise NotFound("challenge not found or expired")
        verifier = self._verifiers.get(method)
        if method not in challenge.methods or verifier is None:
            raise PreconditionFailed(f"method: {method} is not offered for this sign-in")
        subject = await self._store.load_subject(challenge.user_id, attempt.source)
        if subject.user is None:
            raise NotFound("challenge not found or expired")
        ctx = VerifyContext(subject=subject, attempt=attempt, now=now,
                            policy=await self._policy.effective(subject.user, attempt.client),
                            pending=Pending(challenge_hash=challenge.id_hash), hold_seconds=hold_seconds)
        return await verifier.start(ctx, challenge)

    async def _audit_refusal(self, challenge: Challenge | None, reason: Reason, method: Method, attempt: Attempt,
                             now: datetime) -> None:
        """A refusal decided before the user is loaded (unknown, spent or expired
        challenge) is an outcome too: it gets its audit row."""
        event = self._event("verify", reason, Subject(user=None), attempt, method=method)
        user_id = challenge.user_id if challenge is not None else None
        await self._store.append_audit(now, [dataclasses.replace(event, user_id=user_id)])

    def _dummy_totp_work(self, code: str, now: datetime) -> None:
        """The same computation a real verification does, so timing says nothing."""
        dummy_check(code if code.isdigit() else "000000", now, self._totp.window)

    # --- step-up -------------------------------------------------------------------------
    async def open_step_up(self, username: str, method: Method, attempt: Attempt) -> SignInResult:
        """A challenge for one method of a user whose first factor the caller vouches for (a
        live session, a service caller): the first half of a two-call step-up. REFUSED —
        the same for every reason — when the user is unknown, locked or disabled, or has no
        usable device of that method; ``complete`` then takes the proof as for a sign-in."""
        username = self._usernames.normalize(username)
        subject = await self._store.load_subject(username, attempt.source)
        now = self._clock.now()
        reason = self._refusal(subject, now, password_ok=True)
        if reason is None and method not in self._usable_methods(
                subject.devices, await self._policy.effective(subject.user, attempt.client)):
            reason = Reason.METHOD_NOT_OFFERED
        if reason is not None:
            await self._store.append_audit(now, [self._event("step_up", reason, subject, attempt, method=method)])
            return SignInResult(outcome=Outcome.REFUSED, reason=reason)
        return await self._open_challenge(subject, attempt, now, "signin", frozenset({method}),
                                          Outcome.SECOND_FACTOR_REQUIRED, Reason.SECOND_FACTOR, None, None)

    # --- usernameless passkey sign-in -----------------------------------------------------
    def register_usernameless(self, verifier: UsernamelessVerifier) -> None:
        """Register ``verifier`` for its method and for usernameless sign-in."""
        self.register(verifier)
        self._usernameless = verifier

    async def _begin_usernameless(self, attempt: Attempt) -> SignInResult:
        """Open a ceremony that any discoverable passkey may answer. No user is read, so
        nothing can be learnt about one; the source's failure bucket still applies."""
        assert self._usernameless is not None
        method = self._usernameless.method
        subject = await self._store.load_subject("", attempt.source)  # no user has an empty name
        now = self._clock.now()
        policy = await self._policy.current()
        block = self._rules.blocked(LimitState(), subject.bucket, now)
        if block is not None or not policy.allows(method):
            reason = _BLOCK_REASON[block] if block is not None else Reason.METHOD_NOT_OFFERED
            await self._store.append_audit(now, [self._event("signin", reason, subject, attempt, method=method)])
            return SignInResult(outcome=Outcome.REFUSED, reason=reason)
        challenge_id = secrets.token_urlsafe(CHALLENGE_ID_BYTES)
        event = self._event("signin", Reason.USERNAMELESS, subject, attempt, method=method,
                            outcome=Outcome.SECOND_FACTOR_REQUIRED.value)
        expires = await self._usernameless.open_usernameless(challenge_hash(challenge_id), now, [event])
        return SignInResult(outcome=Outcome.SECOND_FACTOR_REQUIRED, reason=Reason.USERNAMELESS,
                            challenge_id=challenge_id, methods=frozenset({method}), expires_at=expires)

    async def _complete_usernameless(self, id_hash: str, response: str, attempt: Attempt, started: float, *,
                                     remember: bool, remember_label: str) -> VerifyResult:
        assert self._usernameless is not None
        method = self._usernameless.method
        now = self._clock.now()
        found = await self._usernameless.identify(id_hash, response, now)
        subject = Subject(user=None)
        if not isinstance(found, Reason):
            subject = await self._store.load_subject(found, attempt.source)
        if subject.user is None:
            reason = found if isinstance(found, Reason) else Reason.UNKNOWN_CREDENTIAL
            if reason is Reason.UNKNOWN_CREDENTIAL:
                await self._fail(subject, attempt, now, method, reason, None, None)  # the source's counters
            else:
                await self._audit_refusal(None, reason, method, attempt, now)
            return self._refused(reason, method, attempt, started)
        pending = Pending(challenge_hash=None, usernameless=id_hash)
        policy = await self._policy.effective(subject.user, attempt.client)
        if remember and policy.remember_device:
            self._prepare_remember(pending, subject.user, now, policy, remember_label or attempt.protocol)
        return await self._verify(subject, method, response, attempt, now, pending, started)

    # --- failures ------------------------------------------------------------------------
    async def count_failure(self, user: User, attempt: Attempt, method: Method, reason: Reason) -> None:
        """One failure of ``user`` decided outside a verification (a refused approval), counted
        and audited like a wrong code."""
        subject = await self._store.load_subject(user.id, attempt.source)
        await self._fail(subject, attempt, self._clock.now(), method, reason, None, None)

    async def _fail(self, subject: Subject, attempt: Attempt, now: datetime, method: Method | None, reason: Reason,
                    repeat_key: str | None, id_hash: str | None) -> LimitChange | None:
        """Count one failure (user counters, source back-off and bucket) with its audit row.
        ``repeat_key``: see ``MethodOutcome.repeat_key``."""
        event = self._event("verify" if method else "signin", reason, subject, attempt, method=method)
        user = subject.user
        wrong_hash = None
        if repeat_key is not None and user is not None:
            wrong_hash = self._keyring.mac(f"{user.id}:{repeat_key}".encode())

        def change(state: LimitState) -> LimitChange:
            assert user is not None
            return self._rules.after_failure(state, now, wrong_hash, user_id=user.id, username=user.username,
                                             source=attempt.source)

        bucket = self._rules.drain_bucket(now) if self._limits.source_failure_rate > 0 else None
        applied = await self._store.record_failure(user.id if user else None, attempt.source, now, change, bucket,
                                                   id_hash, [event])
        if applied is not None and applied.became_locked:
            self._metrics.lockout()
        return applied

    def _event(self, event: str, reason: Reason, subject: Subject, attempt: Attempt, *,
               method: Method | None = None, outcome: str = "refused") -> AuditEvent:
        user = subject.user
        return AuditEvent(event=event, outcome=outcome, user_id=user.id if user else None,
                          username=user.username if user else None, method=method.value if method else None,
                          protocol=attempt.protocol, source=attempt.source, reason=reason.value,
                          actor=attempt.client)

    def _refused(self, reason: Reason, method: Method, attempt: Attempt, started: float,
                 tries_left: int = 0) -> VerifyResult:
        result = "locked" if reason in (Reason.LOCKED, Reason.HARD_LOCKED) else reason.value
        self._metrics.verification(attempt.protocol, method.value, result, time.perf_counter() - started)
        return VerifyResult(accepted=False, reason=reason, method=method, tries_left=max(0, tries_left))


def _check_response(method: Method, response: str) -> None:
    """The one shape check of a typed response, before anything is read: InvalidInput for
    a code that can never be valid. (Recovery codes and WebAuthn assertions are parsed by
    their verifiers, which refuse a malformed one as wrong.)"""
    if method in TYPED_CODE_METHODS:
        totp.check_code_input(response)


def split_appended(typed: str, digits: int | None) -> tuple[str, str]:
    """``password + code`` → (password, code) with a code of ``digits`` ASCII digits.

    Without a device length (``None``) or when the tail is not that many digits, the
    whole string is the password and the code is empty (then a needed code is refused
    as malformed)."""
    if digits is None or len(typed) <= digits:
        return typed, ""
    head, tail = typed[:-digits], typed[-digits:]
    if not (tail.isascii() and tail.isdigit()):
        return typed, ""
    return head, tail


def _totp_digits(devices: Sequence[Device]) -> int | None:
    device = next((d for d in devices if d.method is Method.TOTP and d.is_active and d.totp), None)
    return device.totp.digits if device is not None and device.totp is not None else None
