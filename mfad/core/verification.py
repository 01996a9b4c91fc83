"""The vocabulary of a verification, shared by the sign-in flows and every method.

What a transport sends (:class:`SignInRequest` with its :data:`FirstFactor` and
:class:`Attempt`), what it gets back (:class:`SignInResult`, :class:`VerifyResult`,
:class:`ChallengeStarted`), and the contract a second-factor method implements
(:class:`SecondFactorVerifier`, :class:`UsernamelessVerifier`, :class:`VerifyContext`,
:class:`MethodOutcome`). The flows that use them are in :mod:`mfad.core.signin`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.model import AuditEvent, Challenge, Method, Policy, RememberedDevice, User, UserId
from mfad.core.ports import Subject

CHALLENGE_ID_BYTES = 16  # 128-bit bearer ids; only their SHA-256 is stored


class Outcome(StrEnum):
    ALLOWED = "allowed"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    ENROLMENT_REQUIRED = "enrolment_required"
    REFUSED = "refused"


class Reason(StrEnum):
    """Why: for the audit log and metrics only, never for the caller."""

    SECOND_FACTOR = "second_factor"
    MFA_OFF = "mfa_off"
    NOT_ENROLLED_ALLOWED = "not_enrolled_allowed"
    REMEMBERED = "remembered_device"
    NO_DEVICE = "no_device"
    UNKNOWN_USER = "unknown_user"
    DISABLED = "disabled"
    WRONG_PASSWORD = "wrong_password"
    #: The directory no longer knows the user, or has disabled them (the local record stays).
    DIRECTORY_UNKNOWN = "directory_unknown_user"
    DIRECTORY_DISABLED = "directory_disabled"
    WRONG_CODE = "wrong_code"
    REPLAY = "replay"
    LOCKED = "locked"
    HARD_LOCKED = "hard_locked"
    SOURCE_BACKOFF = "source_backoff"
    SOURCE_RATE = "source_rate_limited"
    NO_CHALLENGE = "unknown_challenge"
    EXPIRED = "expired_challenge"
    METHOD_NOT_OFFERED = "method_not_offered"
    ACCEPTED = "accepted"
    # WebAuthn (passkeys, U2F keys): which check refused the assertion.
    USERNAMELESS = "usernameless"
    NO_CEREMONY = "webauthn_ceremony_unknown_or_used"
    BAD_CLIENT_DATA = "webauthn_bad_client_data"
    WRONG_ORIGIN = "webauthn_wrong_origin"
    WRONG_CHALLENGE = "webauthn_wrong_challenge"
    WRONG_RP_ID = "webauthn_wrong_rp_id"
    USER_NOT_PRESENT = "webauthn_user_not_present"
    USER_NOT_VERIFIED = "webauthn_user_not_verified"
    UNKNOWN_CREDENTIAL = "webauthn_unknown_credential"
    BAD_SIGNATURE = "webauthn_bad_signature"
    POSSIBLE_CLONE = "webauthn_sign_count_regression"
    # Out-of-band approval (mfad.core.approval).
    APPROVAL_PENDING = "approval_pending"
    APPROVAL_UNKNOWN = "approval_unknown"
    APPROVAL_REFUSED = "approval_refused"
    WRONG_NUMBER = "approval_wrong_number"
    DENIED = "approval_denied"



@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """Where an attempt comes from: ``source`` is the end client's address as the
    transport knows it (Calling-Station-Id, the gRPC client info, the peer)."""

    protocol: str
    source: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInResult:
    outcome: Outcome
    reason: Reason
    user: User | None = None
    challenge_id: str | None = None
    methods: frozenset[Method] = frozenset()
    expires_at: datetime | None = None
    remembered_token: str | None = None
    #: The second factor this call checked, if it checked one.
    method: Method | None = None
    #: With an allowed sign-in whose first factor was an upstream RADIUS server: the reply
    #: attributes of its Access-Accept that the RADIUS client's allow-list names.
    first_factor_reply: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    @property
    def accepted(self) -> bool:
        """A second factor was accepted in this call (and the sign-in is allowed)."""
        return self.outcome is Outcome.ALLOWED and self.method is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    accepted: bool
    reason: Reason
    user: User | None = None
    method: Method | None = None
    remembered_token: str | None = None
    #: Tries left on the challenge after a refusal (0 when it is spent or unknown).
    tries_left: int = 0
    #: As ``SignInResult.first_factor_reply``, kept with the challenge (only when accepted).
    first_factor_reply: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeStarted:
    """A method made ready for an open challenge: what the caller shows, and until when."""

    method: Method
    #: The masked address a code went to (email) or the WebAuthn request options (JSON);
    #: None when there is nothing to show (TOTP: the code is on the user's phone).
    shown: str | None = None
    #: Until when the response is accepted (None: the challenge's own life).
    expires_at: datetime | None = None
    #: Email: the earliest time another code may be requested.
    resend_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Password:
    """The first factor as the user typed it; the service's ``FirstFactorCheck`` judges it."""

    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PasswordThenCode:
    """The password immediately followed by the code, in one string (RADIUS ``append``).

    The core splits it, not the caller: the code has the digits of the user's TOTP device
    (6 or 8), so a password ending in digits is never cut at the wrong place. A user
    without a TOTP device typed the password alone."""

    typed: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Vouched:
    """The caller checked the first factor itself: a RADIUS ``otp_only`` NAS, a gRPC
    service caller, a live session."""


VOUCHED = Vouched()

FirstFactor = Password | PasswordThenCode | Vouched

#: Methods whose response is a typed code of ASCII digits (checked before anything is read).
TYPED_CODE_METHODS = frozenset({Method.TOTP, Method.EMAIL})
#: Methods a code can be checked for without a challenge (``code_required``). An email
#: code is bound to the challenge that mailed it and cannot be checked that way.
ONE_CALL_METHODS = frozenset({Method.TOTP, Method.RECOVERY})


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInRequest:
    """One sign-in as a transport received it. What it carries decides the path:

    - no ``code``: the first factor, then allowed / refused / a challenge opened for the
      second factor owed, whose proof ``complete`` takes (gRPC BeginSignIn, RADIUS
      ``challenge``). An empty username with ``VOUCHED``: a usernameless passkey ceremony.
    - a ``code``, or ``PasswordThenCode``: both factors at once and no challenge (RADIUS
      ``otp_only`` and ``append``). ALLOWED when the code was accepted or none is needed
      (MFA off, not enrolled under ``enrolled``, a remembered station: then the code is
      not looked at); SECOND_FACTOR_REQUIRED with ``methods`` when none of the user's
      usable methods can be typed (passkey only). TOTP codes only.
    - ``code_required``: the caller asks whether ``code`` is a valid second factor of the
      user, whatever the policy says (gRPC VerifyCode, a one-call step-up). Only with
      ``VOUCHED``; ``method`` one of ``ONE_CALL_METHODS``.

    InvalidInput for a username, password or (needed) code that can never be valid.
    """

    username: str
    first_factor: FirstFactor
    attempt: Attempt
    code: str | None = field(default=None, repr=False)
    #: The method ``code`` is for.
    method: Method = Method.TOTP
    code_required: bool = False
    #: A remembered-device token from an earlier ``complete``: when valid (and the policy
    #: still allows remembering) the second factor is skipped; the result carries its successor.
    remembered_token: str | None = field(default=None, repr=False)
    #: What a trusted transport asserts about the end device (RADIUS Calling-Station-Id
    #: from a NAS with ``trust_calling_station_id``): a station remembered after an earlier
    #: second factor skips the second factor while the policy allows remembering, and a
    #: second factor given with it remembers it.
    station: str | None = None
    #: The lifetime and tries of a challenge this request opens (None: the core's settings).
    challenge_ttl: int | None = None
    challenge_tries: int | None = None



@dataclass(slots=True)
class Pending:
    """The accept-side context handed to a method verifier."""

    challenge_hash: str | None
    audit: list[AuditEvent] = field(default_factory=list)
    remember: RememberedDevice | None = None
    remember_hash: str | None = None
    remember_token: str | None = None
    #: A usernameless passkey sign-in: the id hash of its WebAuthn ceremony (no challenge row).
    usernameless: str | None = None



@dataclass(frozen=True, slots=True, kw_only=True)
class MethodOutcome:
    """What a method verifier found. ``accepted`` means it already committed the
    success atomically (its own consume step plus ``ctx.commit_success``)."""

    accepted: bool
    reason: Reason
    #: A wrong typed response together with what it was checked against (the TOTP steps, the
    #: email codes): a repeat with the same key could not succeed where it just failed, so it
    #: counts once. None: not a typed code, every failure counts.
    repeat_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyContext:
    subject: Subject
    attempt: Attempt
    now: datetime
    policy: Policy
    pending: Pending
    #: ``start`` of the approval method in hold mode: the transport keeps its request
    #: unanswered for at most this many seconds (None: not held).
    hold_seconds: int | None = None

    @property
    def user(self) -> User:
        assert self.subject.user is not None
        return self.subject.user


class SecondFactorVerifier(Protocol):
    """One MFA method's verification, plugged into the sign-in service.

    ``verify`` must commit a success in ONE store transaction that also consumes
    ``ctx.pending.challenge_hash`` (when set), resets the user's counters, stores
    ``ctx.pending.remember`` and writes ``ctx.pending.audit`` — see
    ``Store.accept_totp`` for the pattern. Failures are counted by the service.
    """

    method: Method

    async def verify(self, ctx: VerifyContext, response: str) -> MethodOutcome: ...

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        """Prepare the method for a challenge (mail a code, make WebAuthn options):
        what the caller must see, and until when."""
        ...


class UsernamelessVerifier(SecondFactorVerifier, Protocol):
    """A verifier whose response names its user: a discoverable passkey. The sign-in
    service keeps the flow (limits, audit, metrics); the verifier keeps the ceremony."""

    async def open_usernameless(self, id_hash: str, now: datetime, audit: Sequence[AuditEvent]) -> datetime:
        """Store a ceremony under ``id_hash`` (with ``audit``); returns when it expires."""
        ...

    async def start_usernameless(self, id_hash: str, now: datetime) -> ChallengeStarted | None:
        """The request options of that ceremony; None when it is unknown, used or expired."""
        ...

    async def identify(self, id_hash: str, response: str, now: datetime) -> UserId | Reason:
        """The user the response's credential belongs to (nothing consumed), or why not
        (NO_CHALLENGE, EXPIRED, UNKNOWN_CREDENTIAL). Raises InvalidInput for a response
        that can never be valid."""
        ...


def challenge_hash(challenge_id: str) -> str:
    return hashlib.sha256(challenge_id.encode("utf-8", "surrogatepass")).hexdigest()
