"""Recovery codes: the user's own way back when the MFA device is lost.

A set is ``SET_SIZE`` codes of ``CODE_LENGTH`` characters from ``ALPHABET`` (no 0/O,
1/I/L: nothing to misread on paper), made with ``secrets``: log2(31) × 10 ≈ 49.5
bits each, far beyond online guessing under the lock-out (10 failures → a
doubling lock). Typing is forgiving: case, spaces and hyphens do not matter.

Guarantees:
- the clear codes exist only in the answer to ``generate``; the store keeps an
  HMAC under the secrets key, tagged with its key id and bound to the code's row
  (a stolen database cannot be brute-forced offline, a MAC pasted into another
  row matches nothing); comparisons are constant-time, against every unused code;
- generating needs the policy to allow ``recovery``; it replaces the whole set,
  revokes the remembered devices and is audited, in one transaction;
- each code is accepted once, also when instances race (``RecoveryStore``); a
  wrong code is a failure for the lock-out like any other code; using one is
  audited and, when a security email is bound, a notice is queued in the outbox —
  both in the transaction that consumes the code;
- the set is a device of method ``recovery``: it counts as a method type for
  ``lockout_risk`` while codes remain, and goes with its last code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mfad.core.addresses import mask_address
from mfad.core.clock import Clock
from mfad.core.email_codes import EmailCodeService, active_email, describe_source
from mfad.core.errors import PermissionDenied
from mfad.core.keyring import Keyring
from mfad.core.model import AuditEvent, Challenge, Device, Method, User
from mfad.core.outbox import MailContent, paragraphs_mail, seal_body
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, RecoveryCheck, RecoveryNotice, RecoverySet, RecoveryStore
from mfad.core.verification import Attempt, ChallengeStarted, MethodOutcome, Reason, VerifyContext
from mfad.core.users import UserService

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
SET_SIZE = 10
#: A notice that could not be sent within a day is no longer news.
NOTICE_TTL = timedelta(days=1)
_IGNORED = str.maketrans("", "", " -")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryCodes:
    """A new set, shown once: the codes as printed (``ABCDE-FGHJK``)."""

    codes: tuple[str, ...]
    created_at: datetime


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def printed(code: str) -> str:
    half = CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalize(typed: str) -> str | None:
    """The code as stored (upper case, no spaces or hyphens), or None for what cannot be one."""
    clean = typed.translate(_IGNORED).upper()
    if len(clean) != CODE_LENGTH or not clean.isascii() or not set(clean) <= set(ALPHABET):
        return None
    return clean


def looks_like_code(typed: str) -> bool:
    """Whether ``typed`` has a recovery code's shape (a prompt may take one instead of a TOTP code)."""
    return normalize(typed) is not None


def typed_method(expected: Method, typed: str) -> Method:
    """The method a code typed at a prompt answers: a recovery code's shape (10 characters,
    never a 6-8 digit TOTP or email code) names recovery, whatever the prompt asked for."""
    return Method.RECOVERY if looks_like_code(typed) else expected


def _mac_input(code_id: int, code: str) -> bytes:
    return f"recovery-code:{code_id}:{code}".encode()


def recovery_set(devices: list[Device]) -> Device | None:
    return next((d for d in devices if d.method is Method.RECOVERY and d.is_active), None)


class RecoveryServiceStore(RecoveryStore, AuditStore, Protocol):
    """The store as the recovery service uses it."""


class RecoveryService:
    def __init__(self, *, store: RecoveryServiceStore, keyring: Keyring, clock: Clock, policy: PolicyService,
                 users: UserService, email: EmailCodeService) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._policy = policy
        self._users = users
        self._email = email

    async def generate(self, username: str, attempt: Attempt, *, actor: str | None = None) -> RecoveryCodes:
        """A new set for ``username``, replacing any previous one (whose codes stop working)."""
        if not (await self._policy.current()).allows(Method.RECOVERY):
            raise PermissionDenied("the MFA policy does not allow recovery codes")
        user = await self._users.get(username)
        codes: list[str] = []
        while len(codes) < SET_SIZE:
            code = new_code()
            if code not in codes:
                codes.append(code)
        previous = await self._store.load_recovery_set(user.id)
        now = self._clock.now()
        issued = iter(codes)

        def mac(code_id: int) -> str:
            return self._keyring.mac(_mac_input(code_id, next(issued)))  # called once per code, in order

        event = AuditEvent(event="recovery_codes", outcome="regenerated" if previous else "generated",
                           user_id=user.id, username=user.username, method=Method.RECOVERY.value,
                           protocol=attempt.protocol, source=attempt.source, actor=actor or attempt.client,
                           detail=f"count={SET_SIZE}" + (f" replaced_left={previous.codes_left}" if previous else ""))
        device = await self._store.replace_recovery_codes(user.id, SET_SIZE, now, mac, [event])
        return RecoveryCodes(codes=tuple(printed(c) for c in codes), created_at=device.created_at)

    async def status(self, username: str) -> RecoverySet | None:
        """How many codes the user has left (None: no set)."""
        user = await self._users.get(username)
        return await self._store.load_recovery_set(user.id)

    async def accept(self, ctx: VerifyContext, typed: str) -> MethodOutcome:
        clean = normalize(typed)
        device = recovery_set(ctx.subject.devices)
        if clean is None or device is None:
            self._keyring.mac_matches(_mac_input(0, clean or ""), self._keyring.mac(b"mfad dummy"))
            return MethodOutcome(accepted=False, reason=Reason.WRONG_CODE, repeat_key=f"{clean or typed}@-")
        p = ctx.pending
        used = AuditEvent(event="recovery_code", outcome="used", user_id=ctx.user.id, username=ctx.user.username,
                          method=Method.RECOVERY.value, protocol=ctx.attempt.protocol, source=ctx.attempt.source,
                          actor=ctx.attempt.client, detail=f"set={device.id}")

        def matches(code_id: int, tagged: str) -> bool:
            return self._keyring.mac_matches(_mac_input(code_id, clean), tagged)

        check = await self._store.accept_recovery_code(ctx.user.id, ctx.now, matches, p.challenge_hash,
                                                       [*p.audit, used], p.remember, p.remember_hash,
                                                       self._notice(ctx))
        if check is RecoveryCheck.ACCEPTED:
            if active_email(ctx.subject.devices) is not None:
                self._email.mail_queued("recovery_notice")
            return MethodOutcome(accepted=True, reason=Reason.ACCEPTED)
        reason = Reason.WRONG_CODE if check is RecoveryCheck.WRONG else Reason.REPLAY
        # Against the same set, the same wrong code cannot succeed: a repeat counts once.
        return MethodOutcome(accepted=False, reason=reason, repeat_key=f"{clean}@{device.id}")

    def _notice(self, ctx: VerifyContext) -> RecoveryNotice | None:
        email = active_email(ctx.subject.devices)
        if email is None or email.email is None:
            return None
        address, user, now = email.email, ctx.user, ctx.now

        def seal(message_id: int, left: int) -> str:
            content = compose_notice(user=user, address=address, attempt=ctx.attempt, now=now, codes_left=left,
                                     site=self._email.settings.site_name, sender=self._email.settings.sender,
                                     message_id=message_id)
            return seal_body(self._keyring, content, message_id)

        def audit(message_id: int) -> list[AuditEvent]:
            return [AuditEvent(event="recovery_notice", outcome="queued", user_id=user.id, username=user.username,
                               method=Method.RECOVERY.value, protocol=ctx.attempt.protocol,
                               source=ctx.attempt.source, actor=ctx.attempt.client,
                               detail=f"message={message_id} address={mask_address(address)}")]

        return RecoveryNotice(seal=seal, expires_at=now + NOTICE_TTL, audit=audit)


class RecoveryVerifier:
    """The sign-in service's plug-in for recovery codes."""

    method = Method.RECOVERY

    def __init__(self, codes: RecoveryService) -> None:
        self._codes = codes

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        return ChallengeStarted(method=self.method)  # the code is on the user's printed list

    async def verify(self, ctx: VerifyContext, code: str) -> MethodOutcome:
        return await self._codes.accept(ctx, code)


def compose_notice(*, user: User, address: str, attempt: Attempt, now: datetime, codes_left: int, site: str,
                   sender: str, message_id: int) -> MailContent:
    """The mail saying a recovery code was used: when, from where, how many are left, what to do."""
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    source = describe_source(attempt, None)
    left = f"{codes_left} recovery code{'s' if codes_left != 1 else ''} left"
    not_you = ("If this was not you, someone has your password and one of your recovery codes: change your "
               "password, generate new recovery codes and tell your administrator.")
    lines = [f"Hello {user.username},", f"a recovery code was used to sign in to {site} at {when} {source}.",
             f"You have {left}." + (" Generate new ones on the Security Information page." if codes_left < 3 else ""),
             not_you]
    return paragraphs_mail(to=address, subject=f"A {site} recovery code was used", paragraphs=lines,
                           sender=sender, message_id=message_id, now=now)
