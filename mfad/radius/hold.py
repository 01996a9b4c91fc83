"""Hold mode (docs/approval.md): Access-Requests kept unanswered until their approval is decided.

A NAS that cannot show a challenge (``append``/``otp_only`` clients with
``approval_hold_seconds``) sends ``password`` + ``approve`` (or ``approve``); the sign-in
adapter opens a *held* approval and hands the server a
:class:`~mfad.radius.handler.Deferred`. This module keeps those requests:

- no task and no worker per held request while it waits: each is a small record in the
  core's waiter registry (``mfad.core.approval_waits``, keyed by its approval) and in one
  timer heap served by a single ``loop.call_at`` handle;
- a wake (a decision on any instance, a reconnected feed, or a retransmission of the
  request, which is the NAS asking again) starts one short task that takes the approval
  through the ordinary ``SignInService.complete``: Access-Accept once approved — once,
  whichever instance decided it —, Access-Reject when it was denied or refused, nothing
  yet while it waits (a wake is only a hint);
- at the hold's end the request gets Access-Reject and its approval, if still pending,
  is refused (audited as ``approval_hold_expired``, not counted as a failure);
- at most ``max_held`` requests are held per process; beyond, a request is refused at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from typing import Final

from mfad.core.approval import ApprovalService
from mfad.core.approval_waits import Waiter
from mfad.core.errors import MfadError, Unavailable
from mfad.core.model import Method
from mfad.core.signin import SignInService
from mfad.core.verification import Attempt, Reason
from mfad.radius.handler import NO_REPLY, Decision, Deferred, NoReply

log = logging.getLogger("mfad.radius")

MAX_HELD: Final = 10_000
"""Held requests per process (each is a few hundred bytes; the bound is against floods)."""
#: Refusals that only mean "not decided yet": the held request keeps waiting.
_NOT_YET: Final = frozenset({Reason.APPROVAL_PENDING, Reason.APPROVAL_UNKNOWN})


class _Held:
    __slots__ = ("challenge_id", "username", "attempt", "station", "reject", "deferred", "waiter", "deadline",
                 "checking", "again", "final", "done")

    def __init__(self, challenge_id: str, username: str, attempt: Attempt, station: str | None,
                 reject: Decision, deadline: float) -> None:
        self.challenge_id = challenge_id
        self.username = username
        self.attempt = attempt
        self.station = station
        self.reject = reject
        self.deadline = deadline
        self.deferred: Deferred | None = None
        self.waiter: Waiter | None = None
        self.checking = False  # a check is running: a wake meanwhile asks for another one
        self.again = False
        self.final = False  # the hold is over: the next check is the last
        self.done = False


class HeldSignIns:
    """The held requests of one process (see the module docstring)."""

    def __init__(self, signin: SignInService, approvals: ApprovalService, *, max_held: int = MAX_HELD) -> None:
        self._signin = signin
        self._approvals = approvals
        self._max_held = max_held
        self._count = 0
        self._heap: list[tuple[float, int, _Held]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return self._count

    def hold(self, challenge_id: str, username: str, attempt: Attempt, station: str | None, seconds: float,
             reject: Decision) -> Deferred | None:
        """Register a request held for the approval of ``challenge_id`` — before the approval
        exists, so that no decision can come unnoticed — or None when too many are held."""
        if self._count >= self._max_held:
            log.warning("RADIUS hold refused: %d requests are held already", self._count)
            return None
        loop = asyncio.get_running_loop()
        held = _Held(challenge_id, username, attempt, station, reject, loop.time() + seconds)
        held.deferred = Deferred(seconds, on_retransmit=lambda: self._check(held),
                                 on_abandon=lambda: self._forget(held))
        held.waiter = self._approvals.waiters.wait(challenge_id, lambda: self._check(held))
        self._count += 1
        heapq.heappush(self._heap, (held.deadline, next(self._seq), held))
        self._arm(loop)
        return held.deferred

    def forget(self, deferred: Deferred) -> None:
        """The hold was not started after all (the approval could not be opened)."""
        deferred.abandon()

    async def aclose(self) -> None:
        """Let running checks finish (each is one short core call)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    # --- wakes -----------------------------------------------------------------------------
    def _check(self, held: _Held, *, final: bool = False) -> None:
        if held.done:
            return
        held.final = held.final or final
        if held.checking:
            held.again = True
            return
        held.checking = True
        task = asyncio.get_running_loop().create_task(self._run_check(held))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_check(self, held: _Held) -> None:
        try:
            while not held.done:
                held.again = False
                final = held.final
                decision = await self._decide(held, final)
                if decision is not None:
                    await self._settle(held, decision)
                    return
                if not (held.again or held.final != final):
                    return
        finally:
            held.checking = False

    async def _decide(self, held: _Held, final: bool) -> Decision | NoReply | None:
        """The reply for ``held`` now, or None to keep waiting."""
        try:
            result = await self._signin.complete(held.challenge_id, Method.APPROVAL, "", held.attempt,
                                                 station=held.station)
            if result.accepted:
                if result.user is None or result.user.username != held.username:
                    return held.reject
                return Decision.accept()
            if result.reason in _NOT_YET and not final:
                return None
            if final:
                await self._approvals.expire_hold(held.challenge_id, held.attempt)
            return held.reject
        except Unavailable as exc:
            if not final:
                return None  # the next wake (or the hold's end) asks again
            log.warning("store unavailable at the end of a RADIUS hold: no reply (%s)", exc)
            return NO_REPLY
        except MfadError as exc:
            log.warning("RADIUS held request refused: %s", exc)
            return held.reject

    async def _settle(self, held: _Held, decision: Decision | NoReply) -> None:
        deferred = held.deferred
        self._forget(held)
        if deferred is not None:
            await deferred.settle(decision)

    def _forget(self, held: _Held) -> None:
        if held.done:
            return
        held.done = True
        self._count -= 1
        if held.waiter is not None:
            held.waiter.cancel()
            held.waiter = None
        held.deferred = None  # the heap entry goes when its time comes (or is skipped then)

    # --- the one timer -----------------------------------------------------------------------
    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        if not heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        at = heap[0][0]
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, held = heapq.heappop(heap)
            if not held.done:
                self._check(held, final=True)
        self._arm(loop)
