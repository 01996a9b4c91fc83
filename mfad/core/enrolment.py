"""One-time enrolment codes (a temporary access pass) and the proof a user with no device
must present before binding the first one (the global policy's ``enrolment_proof``).

Without a proof, whoever knows a user's password could bind the first device of a new
user — or of one whose last device an administrator just unbound — and own their
second factor from then on. With ``enrolment_proof = access_code`` an enrolment session
must first present a code an administrator or helpdesk issued for that user; with
``email_code`` a code mailed to the user's security email (else the profile email).

Guarantees:
- a code is ``CODE_LENGTH`` characters from the recovery codes' unambiguous alphabet
  (log2(31) × 12 ≈ 59 bits), made with ``secrets``, shown once in the answer to
  :meth:`EnrolmentService.issue` and stored only as an HMAC under the secrets key,
  bound to its row; it lives ``hours`` (default ``DEFAULT_HOURS``, at most
  ``MAX_HOURS``), is accepted once, after at most ``TRIES`` tries (each spent before
  the comparison), and issuing a new one replaces the old; issuing, using and every
  refusal are audited in the transaction that records them;
- the proof is owed by the session (recorded when the sign-in issued it), so every
  transport that binds with an enrolment session — the portal, gRPC Enrollment — is
  held by :meth:`mfad.core.selfservice.SelfService.authorize`; so is a full session
  signed in without a second factor (``mfa_required`` ``enrolled`` or ``off``) by a user
  with no active device, which owes the same proof; RADIUS never binds;
- every refusal answers the same ``False`` (wrong, expired, used, none issued, tries
  spent, malformed): the reason is only in the audit log; comparisons are
  constant-time, and a path with nothing to compare does the work of one comparison.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mfad.core import recovery
from mfad.core.clock import Clock
from mfad.core.email_codes import CodeSent, EmailCodeService, active_email
from mfad.core.errors import InvalidInput, PreconditionFailed, Unauthenticated
from mfad.core.keyring import Keyring
from mfad.core.model import AuditEvent, Device, EnrolmentProof, User
from mfad.core.outbox import CodeCheck
from mfad.core.ports import AuditStore, DeviceStore, EnrolmentCheck, EnrolmentCode, EnrolmentCodeStore, UserStore
from mfad.core.sessions import UserSession
from mfad.core.users import UserService
from mfad.core.verification import Attempt

CODE_LENGTH = 12
DEFAULT_HOURS = 24
#: A pass that outlives a month is a second password nobody rotates.
MAX_HOURS = 720
#: Tries per code: enough for typing errors, nothing for guessing ~59 bits.
TRIES = 5
_IGNORED = str.maketrans("", "", " -")

#: What the user is told when no email address can receive the code.
NO_ADDRESS = ("no email address is known for your account to send the code to: ask an administrator "
              "for an enrolment code")


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedEnrolmentCode:
    """A new code, shown once: as printed (``ABCD-EFGH-JKMN``)."""

    code: str
    expires_at: datetime
    #: Whether an unused older code was replaced (it stops working).
    replaced: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofStarted:
    """What the user must now present: the method, and for an email code where it went."""

    proof: EnrolmentProof
    sent: CodeSent | None = None


def new_code() -> str:
    return "".join(secrets.choice(recovery.ALPHABET) for _ in range(CODE_LENGTH))


def printed(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize(typed: str) -> str | None:
    """The code as stored (upper case, no spaces or hyphens), or None for what cannot be one."""
    clean = typed.translate(_IGNORED).upper()
    if len(clean) != CODE_LENGTH or not clean.isascii() or not set(clean) <= set(recovery.ALPHABET):
        return None
    return clean


def _mac_input(code_id: int, code: str) -> bytes:
    return f"enrolment-code:{code_id}:{code}".encode()


def check_hours(hours: int) -> int:
    if hours == 0:
        return DEFAULT_HOURS
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidInput("hours", f"must be between 1 and {MAX_HOURS}")
    return hours


class EnrolmentServiceStore(EnrolmentCodeStore, UserStore, DeviceStore, AuditStore, Protocol):
    """The store as the enrolment service uses it."""


class EnrolmentService:
    def __init__(self, *, store: EnrolmentServiceStore, keyring: Keyring, clock: Clock, users: UserService,
                 email: EmailCodeService) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._users = users
        self._email = email

    async def issue(self, username: str, hours: int, attempt: Attempt, *, actor: str | None) -> IssuedEnrolmentCode:
        """A new code for ``username`` valid ``hours`` (0: the default), replacing any older one."""
        hours = check_hours(hours)
        user = await self._users.get(username)
        code = new_code()
        now = self._clock.now()
        expires = now + timedelta(hours=hours)
        replaced: list[bool] = []

        def audit(old: EnrolmentCode | None) -> list[AuditEvent]:
            replaced.append(old is not None and old.is_live(now))
            return [AuditEvent(event="enrolment_code", outcome="issued", user_id=user.id, username=user.username,
                               protocol=attempt.protocol, source=attempt.source, actor=actor or attempt.client,
                               detail=f"hours={hours} replaced={replaced[0]}")]

        await self._store.replace_enrolment_code(
            user.id, now, expires, TRIES, actor, lambda row_id: self._keyring.mac(_mac_input(row_id, code)), audit)
        return IssuedEnrolmentCode(code=printed(code), expires_at=expires, replaced=replaced[0])

    async def status(self, username: str) -> EnrolmentCode | None:
        """The user's code as stored (when issued, until when, whether used), or None."""
        user = await self._users.get(username)
        return await self._store.load_enrolment_code(user.id)

    async def start(self, session: UserSession, attempt: Attempt) -> ProofStarted:
        """What the enrolment session owes; for an email code, a code is mailed now (to the
        security email, else the profile email; none: ``PreconditionFailed`` saying to ask an
        administrator)."""
        owed, user = await self._owing(session)
        if owed is not EnrolmentProof.EMAIL_CODE:
            return ProofStarted(proof=owed)
        address = self._address(user, await self._store.load_devices(user.id))
        if address is None:
            await self._store.append_audit(self._clock.now(), [self._event(user, "refused", attempt, owed,
                                                                           reason="no_address")])
            raise PreconditionFailed(NO_ADDRESS)
        sent = await self._email.send_enrolment_code(user, address, session.id_hash, attempt)
        return ProofStarted(proof=owed, sent=sent)

    async def present(self, session: UserSession, typed: str, attempt: Attempt) -> bool:
        """The owed proof: True when accepted (the session may now bind a first device), or
        when none is owed."""
        if not typed.strip():
            raise InvalidInput("code", "must not be empty")
        owed, user = await self._owing(session)
        if owed is EnrolmentProof.NONE:
            return True
        used = [self._event(user, "used", attempt, owed)]
        if owed is EnrolmentProof.EMAIL_CODE:
            mailed = await self._email.accept_enrolment_code(user, session.id_hash, typed.strip(), attempt, used)
            return mailed is CodeCheck.ACCEPTED
        clean = normalize(typed)
        if clean is None:
            self._keyring.mac_matches(_mac_input(0, typed[:64]), self._keyring.mac(b"mfad dummy"))
            await self._store.append_audit(self._clock.now(), [self._event(user, "refused", attempt, owed,
                                                                           reason="malformed")])
            return False

        def matches(code_id: int, tagged: str) -> bool:
            return self._keyring.mac_matches(_mac_input(code_id, clean), tagged)

        def refused(check: EnrolmentCheck) -> list[AuditEvent]:
            return [self._event(user, "refused", attempt, owed, reason=check.value)]

        check = await self._store.accept_enrolment_code(user.id, session.id_hash, self._clock.now(), matches, used,
                                                        refused)
        if check is EnrolmentCheck.NO_CODE:
            self._keyring.mac_matches(_mac_input(0, clean), self._keyring.mac(b"mfad dummy"))
        return check is EnrolmentCheck.ACCEPTED

    async def _owing(self, session: UserSession) -> tuple[EnrolmentProof, User]:
        """The proof the session owes (recorded at issue: an enrolment session, or a full one
        issued to a user with no device) and its user."""
        user = await self._store.load_user(session.user_id)
        if user is None or user.disabled:
            raise Unauthenticated("the user session is missing, expired or revoked: sign in again")
        return session.proof_owed or EnrolmentProof.NONE, user

    @staticmethod
    def _address(user: User, devices: list[Device]) -> str | None:
        email = active_email(devices)
        if email is not None and email.email:
            return email.email
        return user.profile_email or None

    @staticmethod
    def _event(user: User, outcome: str, attempt: Attempt, proof: EnrolmentProof, *,
               reason: str | None = None) -> AuditEvent:
        return AuditEvent(event="enrolment_proof", outcome=outcome, user_id=user.id, username=user.username,
                          protocol=attempt.protocol, source=attempt.source, actor=attempt.client, reason=reason,
                          detail=f"proof={proof}")
