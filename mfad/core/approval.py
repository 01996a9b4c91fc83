"""Out-of-band approval of a sign-in, with number matching (docs/approval.md).

A passkey cannot be typed at a VPN prompt. Instead the sign-in's challenge offers the
``approval`` method: :class:`ApprovalVerifier` ``start`` makes the user's one pending
approval with a two-digit number that the transport shows ("approve at … and choose
47"); on the portal's Approve sign-in page the user picks that number among three and
proves it is them with a fresh passkey assertion (user verification required) — or, where
the policy's ``approval_with_totp`` allows, a TOTP code (spent by the replay guard, a wrong
one counted as a failure, like any code of a step-up) — and
:class:`ApprovalService` records the decision; the sign-in then takes the approval
through the ordinary ``SignInService.complete`` (``verify``): accepted once approved,
*pending* — neither a failure nor a spent try — while it waits.

Guarantees:
- one pending approval per user: a new sign-in's approval replaces the old one, so a
  flood of prompts leaves one thing to approve, showing where and when it comes from;
- an approval is bound to its challenge and its user, expires with the challenge, and is
  used once (conditional moves in the store, see ``mfad.store.approval``);
- a wrong number refuses the approval (the sign-in is over) and counts as a failure, as
  does "Deny — this wasn't me", which can also lock the account until an administrator
  unlocks it; nothing about another user's approval can be decided or learnt (it is
  "not found", like one that never existed);
- every step writes an audit row in the transaction that makes it, and is counted in the
  ``approval`` metric (result ``requested``, ``approved``, ``wrong_number``, ``denied``,
  ``reported``, ``used``, ``refused``, ``expired``).

Hold mode (``start`` with ``ctx.hold_seconds``): the transport keeps its request unanswered
while the approval waits, so nothing can show a number; the approval is then *held*
(``number`` 0, no choices on the page, approved with the passkey alone), lives only as
long as the hold, and is allowed only while the policy's ``approval_hold`` is on.
``ApprovalService.watch`` and the transports' held requests learn of a decision from
``mfad.core.approval_waits`` (no polling).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from mfad.core.approval_records import Approval, ApprovalState, ApprovalStore
from mfad.core.clock import Clock
from mfad.core.approval_waits import ApprovalWaiters
from mfad.core.errors import InvalidInput, PermissionDenied
from mfad.core.model import AuditEvent, Challenge, Method, User
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, DeviceStore
from mfad.core.signin import SignInService
from mfad.core.totp import check_code_input
from mfad.core.verification import Attempt, ChallengeStarted, MethodOutcome, Reason, VerifyContext, challenge_hash

#: Two digits: easy to read off a VPN prompt and to find among three on a phone; one
#: guess in three succeeds at random, and a wrong guess ends the sign-in.
NUMBERS = range(10, 100)
CHOICES = 3
APPROVAL_ID_BYTES = 16
#: A held approval outlives its hold by this much, so that the transport's last look at
#: the hold's end still finds it open and refuses it (``expire_hold``) rather than meeting
#: an expired one, which would count as a failure of the user's.
HOLD_GRACE_SECONDS = 10


@runtime_checkable
class ApprovalMetrics(Protocol):
    def approval(self, result: str) -> None: ...


class NullApprovalMetrics:
    def approval(self, result: str) -> None:
        pass


class ApprovalServiceStore(ApprovalStore, AuditStore, DeviceStore, Protocol):
    """The store as the approval service uses it."""

    async def load_challenge(self, id_hash: str) -> Challenge | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSignIn:
    """A sign-in waiting for its user's decision, as the Approve sign-in page shows it."""

    approval_id: str
    client: str | None
    source: str | None
    protocol: str
    created_at: datetime
    expires_at: datetime
    #: The number the prompt shows and two others, in ascending order (none when held).
    choices: tuple[int, ...]
    #: Hold mode: a NAS waits for it without showing anything; there is no number to match.
    held: bool = False


class ApprovalStatus(StrEnum):
    """Where a sign-in's approval stands, as a watching caller learns it."""

    #: No approval for that challenge (never started, replaced by a newer sign-in, or unknown).
    UNKNOWN = "unknown"
    PENDING = "pending"
    #: Approved: the sign-in may now take it (``complete``), once.
    APPROVED = "approved"
    #: The sign-in took it.
    USED = "used"
    #: Denied, a wrong number, or the sign-in ended another way.
    REFUSED = "refused"
    EXPIRED = "expired"


class Decided(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    #: Refused: wrong number, a proof that did not verify, or nothing pending by that id.
    REFUSED = "refused"


def choices_for(approval: Approval) -> tuple[int, ...]:
    """The number and two others, the same every time the page is shown (derived from the
    approval's random id, so reloading the page teaches nothing)."""
    picked = {approval.number}
    counter = 0
    while len(picked) < CHOICES:
        digest = hashlib.sha256(f"{approval.id}:{counter}".encode()).digest()
        picked.add(NUMBERS[int.from_bytes(digest[:4], "big") % len(NUMBERS)])
        counter += 1
    return tuple(sorted(picked))


def _event(event: str, outcome: str, user: User, attempt: Attempt, reason: str | None = None,
           approval: Approval | None = None) -> AuditEvent:
    detail = None
    if approval is not None:
        detail = f"approval for {approval.protocol} sign-in via {approval.client or '-'} from {approval.source or '-'}"
    return AuditEvent(event=event, outcome=outcome, user_id=user.id, username=user.username,
                      method=Method.APPROVAL.value, protocol=attempt.protocol, source=attempt.source,
                      reason=reason, actor=attempt.client, detail=detail)


class ApprovalVerifier:
    """The ``approval`` method of a sign-in challenge (a ``SecondFactorVerifier``)."""

    method = Method.APPROVAL

    def __init__(self, store: ApprovalStore, metrics: ApprovalMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        """The user's approval for this challenge, replacing any other: its number is ``shown``
        (held: nothing is shown, and it lives only as long as the hold)."""
        held = ctx.hold_seconds is not None
        expires, number = challenge.expires_at, NUMBERS[secrets.randbelow(len(NUMBERS))]
        if ctx.hold_seconds is not None:
            if not ctx.policy.approval_hold:
                raise PermissionDenied("policy: approval hold mode is not allowed")
            expires = min(expires, ctx.now + timedelta(seconds=ctx.hold_seconds + HOLD_GRACE_SECONDS))
            number = 0
        approval = Approval(id=secrets.token_urlsafe(APPROVAL_ID_BYTES), user_id=ctx.user.id,
                            challenge_hash=challenge.id_hash, number=number,
                            client=ctx.attempt.client, source=challenge.source or ctx.attempt.source,
                            protocol=challenge.protocol, created_at=ctx.now, expires_at=expires, held=held)
        await self._store.replace_approval(approval, [_event("approval", "pending", ctx.user, ctx.attempt,
                                                             "held" if held else None, approval=approval)])
        self._metrics.approval("requested")
        return ChallengeStarted(method=self.method, shown=None if held else f"{approval.number:02d}",
                                expires_at=approval.expires_at)

    async def verify(self, ctx: VerifyContext, response: str) -> MethodOutcome:
        """Whatever was typed: the approval decides (the response is only "I pressed Enter")."""
        id_hash = ctx.pending.challenge_hash
        approval = await self._store.load_approval_for_challenge(id_hash) if id_hash else None
        if approval is None or approval.user_id != ctx.user.id:
            return MethodOutcome(accepted=False, reason=Reason.APPROVAL_UNKNOWN)
        if approval.is_open(ctx.now):
            return MethodOutcome(accepted=False, reason=Reason.APPROVAL_PENDING)
        p = ctx.pending
        if approval.state is ApprovalState.APPROVED and await self._store.accept_approval(
                approval.challenge_hash, ctx.user.id, ctx.now, p.audit, p.remember, p.remember_hash):
            self._metrics.approval("used")
            return MethodOutcome(accepted=True, reason=Reason.ACCEPTED)
        return MethodOutcome(accepted=False, reason=Reason.APPROVAL_REFUSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """The user's fresh proof on the page: a passkey assertion (user verification required)
    for a challenge opened for it (a step-up challenge of the same user), or a TOTP code
    (``challenge_id`` unused: the service opens the step-up itself)."""

    method: Method
    response: str
    challenge_id: str = ""


class ApprovalService:
    """What the Approve sign-in page does, on behalf of a signed-in user."""

    def __init__(self, *, store: ApprovalServiceStore, clock: Clock, signin: SignInService,
                 metrics: ApprovalMetrics, waiters: ApprovalWaiters, policy: PolicyService | None = None) -> None:
        self._store = store
        self._clock = clock
        self._signin = signin
        self._metrics = metrics
        self.waiters = waiters
        self._policy = policy

    async def proof_methods(self, user: User) -> frozenset[Method]:
        """How ``user`` may prove an approval on the page: a passkey; also a TOTP code when
        the policy's ``approval_with_totp`` is on and the user has an active TOTP device."""
        if self._policy is None or not (await self._policy.current()).approval_with_totp:
            return frozenset({Method.PASSKEY})
        devices = await self._store.load_devices(user.id)
        has_totp = any(d.method is Method.TOTP and d.is_active for d in devices)
        return frozenset({Method.PASSKEY, Method.TOTP}) if has_totp else frozenset({Method.PASSKEY})

    async def list_pending(self, user: User) -> list[PendingSignIn]:
        found = await self._store.list_open_approvals(user.id, self._clock.now())
        return [PendingSignIn(approval_id=a.id, client=a.client, source=a.source, protocol=a.protocol,
                              created_at=a.created_at, expires_at=a.expires_at,
                              choices=() if a.held else choices_for(a), held=a.held)
                for a in found]

    # --- for the sign-in's side: what the waiting caller learns ---------------------------
    async def status(self, challenge_id: str) -> ApprovalStatus:
        """Where the approval of the sign-in ``challenge_id`` stands (nothing changed)."""
        if not challenge_id or len(challenge_id) > 64:
            raise InvalidInput("challenge_id", "is not a challenge id")
        status, _ = await self._status(challenge_hash(challenge_id))
        return status

    async def _status(self, id_hash: str) -> tuple[ApprovalStatus, datetime | None]:
        approval = await self._store.load_approval_for_challenge(id_hash)
        if approval is None:
            return ApprovalStatus.UNKNOWN, None
        if approval.state is not ApprovalState.PENDING:
            return ApprovalStatus(approval.state.value), None
        if self._clock.now() >= approval.expires_at:
            return ApprovalStatus.EXPIRED, None
        challenge = await self._store.load_challenge(id_hash)
        if challenge is None or challenge.consumed:
            return ApprovalStatus.REFUSED, None  # the sign-in ended another way (a code at the same prompt)
        return ApprovalStatus.PENDING, approval.expires_at

    async def watch(self, challenge_id: str, *, timeout: float) -> AsyncIterator[ApprovalStatus]:
        """The approval's status now, then each change until it is decided or expires, for at
        most ``timeout`` seconds (then the stream just ends). Woken by the store's decision
        feed, on whichever instance the decision is made; no polling."""
        if not challenge_id or len(challenge_id) > 64:
            raise InvalidInput("challenge_id", "is not a challenge id")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.Event()
        waiter = self.waiters.wait(challenge_id, woken.set)  # before the first read: no decision falls between
        last: ApprovalStatus | None = None
        try:
            while True:
                woken.clear()
                status, expires = await self._status(waiter.key)
                if status is not last:
                    yield status
                    last = status
                if status is not ApprovalStatus.PENDING or expires is None:
                    return
                left = min(deadline - loop.time(), (expires - self._clock.now()).total_seconds())
                if left <= 0:
                    if deadline <= loop.time():
                        return
                    continue  # expired now: the next read says so
                try:
                    async with asyncio.timeout(left):
                        await woken.wait()
                except TimeoutError:
                    if loop.time() >= deadline:
                        return  # the caller's time is up: the stream ends quietly
        finally:
            waiter.cancel()

    async def expire_hold(self, challenge_id: str, attempt: Attempt) -> None:
        """A held sign-in's hold ran out (its request is refused): its approval, if still
        pending, is refused — not counted as a failure (the user did nothing) — and audited."""
        id_hash = challenge_hash(challenge_id)
        approval = await self._store.load_approval_for_challenge(id_hash)
        if approval is None or not approval.held or approval.state is not ApprovalState.PENDING:
            return
        now = self._clock.now()
        event = AuditEvent(event="approval", outcome="refused", user_id=approval.user_id,
                           method=Method.APPROVAL.value, protocol=attempt.protocol, source=attempt.source,
                           reason="approval_hold_expired", actor=attempt.client,
                           detail=f"held approval for {approval.protocol} sign-in via {approval.client or '-'}")
        if not await self._store.decide_approval(approval.id, approval.user_id, now, ApprovalState.REFUSED,
                                                 [event]):
            await self._store.append_audit(now, [event])  # already past its expiry: nothing left to change
        self._metrics.approval("expired")

    async def approve(self, user: User, approval_id: str, number: int, proof: Proof, attempt: Attempt) -> Decided:
        """Approve the user's pending sign-in ``approval_id`` if ``number`` is the one its
        prompt shows and ``proof`` verifies. A wrong number refuses the sign-in for good."""
        if proof.method not in (Method.PASSKEY, Method.TOTP):
            raise InvalidInput("method", "an approval is proven with a passkey or a TOTP code")
        if proof.method is Method.TOTP and (self._policy is None
                                            or not (await self._policy.current()).approval_with_totp):
            raise PermissionDenied("the policy does not allow approving a sign-in with a TOTP code")
        if proof.method is Method.TOTP:
            check_code_input(proof.response)  # before anything is read or opened
        approval = await self._open(user, approval_id, attempt)
        if approval is None:
            return Decided.REFUSED
        # A held approval has no number to match (the NAS shows nothing): the passkey alone.
        if not approval.held and not hmac.compare_digest(f"{number:02d}".encode(), f"{approval.number:02d}".encode()):
            event = _event("approval", "refused", user, attempt, "approval_wrong_number", approval)
            if await self._store.decide_approval(approval.id, user.id, self._clock.now(), ApprovalState.REFUSED,
                                                 [event]):
                await self._signin.count_failure(user, attempt, Method.APPROVAL, Reason.WRONG_NUMBER)
            self._metrics.approval("wrong_number")
            return Decided.REFUSED
        if not await self._proven(user, proof, attempt):
            self._metrics.approval("refused")
            return Decided.REFUSED  # the proof's own failure is counted and audited by the sign-in service
        event = _event("approval", "approved", user, attempt, proof.method.value, approval)
        if not await self._store.decide_approval(approval.id, user.id, self._clock.now(), ApprovalState.APPROVED,
                                                 [event]):
            await self._store.append_audit(self._clock.now(), [
                _event("approval", "refused", user, attempt, "approval_decided_or_expired", approval)])
            self._metrics.approval("refused")
            return Decided.REFUSED
        self._metrics.approval("approved")
        return Decided.APPROVED

    async def deny(self, user: User, approval_id: str, attempt: Attempt) -> Decided:
        """"This wasn't me": the sign-in is refused and counted as a failure."""
        approval = await self._open(user, approval_id, attempt)
        event = _event("approval", "denied", user, attempt, "approval_denied_by_user", approval)
        if approval is None or not await self._store.decide_approval(
                approval.id, user.id, self._clock.now(), ApprovalState.REFUSED, [event]):
            return Decided.REFUSED
        await self._signin.count_failure(user, attempt, Method.APPROVAL, Reason.DENIED)
        self._metrics.approval("denied")
        return Decided.DENIED

    async def report(self, user: User, attempt: Attempt) -> None:
        """After a denial, at the user's request: lock the account until an administrator
        unlocks it (``lockout reset``), with an audit row the administrators are alerted on."""
        now = self._clock.now()
        await self._store.update_hard_lock(user.id, now, [
            _event("approval_reported", "locked", user, attempt, "sign-in denied by the user: account locked, "
                                                                  "administrator to be told")])
        self._metrics.approval("reported")

    async def _open(self, user: User, approval_id: str, attempt: Attempt) -> Approval | None:
        """The user's own open approval by that id; None — audited, the same for every
        reason (unknown, another user's, decided, expired) — otherwise."""
        if not approval_id or len(approval_id) > 64:
            raise InvalidInput("approval_id", "is not an approval id")
        approval = await self._store.load_approval(approval_id)
        now = self._clock.now()
        if approval is None or approval.user_id != user.id or not approval.is_open(now):
            reason = "approval_unknown" if approval is None or approval.user_id != user.id else \
                "approval_decided_or_expired"
            await self._store.append_audit(now, [_event("approval", "refused", user, attempt, reason)])
            self._metrics.approval("refused")
            return None
        return approval

    async def _proven(self, user: User, proof: Proof, attempt: Attempt) -> bool:
        challenge_id = proof.challenge_id
        if proof.method is Method.TOTP:  # a step-up of one TOTP code: replay guard, failures, audit
            opened = await self._signin.open_step_up(user.username, Method.TOTP, attempt)
            if opened.challenge_id is None:
                return False
            challenge_id = opened.challenge_id
        done = await self._signin.complete(challenge_id, proof.method, proof.response, attempt)
        return done.accepted and done.user is not None and done.user.id == user.id
