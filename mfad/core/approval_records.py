"""Pending approvals as the store keeps them, and the store's part for them.

An approval is a sign-in waiting to be confirmed out of band (docs/approval.md). It is
bound to the sign-in challenge it approves and to its user, lives as long as that
challenge, and moves only forward: ``pending`` → ``approved`` → ``used``, or
``pending`` → ``refused``. Each move is a conditional update on the state it leaves,
so of two instances racing, exactly one moves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.model import AuditEvent, RememberedDevice, UserId


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    #: The sign-in took its approval (single use).
    USED = "used"
    #: Denied by the user, or a wrong number was chosen: the sign-in is refused.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    id: str
    user_id: UserId
    challenge_hash: str
    #: The two digits the sign-in's prompt shows (10–99).
    number: int
    #: The NAS (RADIUS client name) or the gRPC caller that asked.
    client: str | None
    #: The end client as the transport knows it (Calling-Station-Id, the NAS's address).
    source: str | None
    protocol: str
    created_at: datetime
    expires_at: datetime
    state: ApprovalState = ApprovalState.PENDING
    decided_at: datetime | None = None
    #: Hold mode: a RADIUS request waits unanswered for it; no number is shown (``number`` 0).
    held: bool = False

    def is_open(self, now: datetime) -> bool:
        return self.state is ApprovalState.PENDING and now < self.expires_at


#: Told the challenge hash of each decided approval, or None: "decisions may have been
#: missed, look again" (see ``mfad.core.approval_waits``).
DecisionListener = Callable[[str | None], None]


class ApprovalStore(Protocol):
    """The store's part for approvals. Every change writes its audit rows in the same
    transaction; a decision also wakes whoever waits for it (``wait_for_decision``)."""

    async def replace_approval(self, approval: Approval, audit: Sequence[AuditEvent]) -> None:
        """Store ``approval`` as its user's one approval, replacing any earlier one."""
        ...

    async def load_approval(self, approval_id: str) -> Approval | None: ...

    async def load_approval_for_challenge(self, challenge_hash: str) -> Approval | None: ...

    async def list_open_approvals(self, user_id: UserId, now: datetime) -> list[Approval]: ...

    async def count_open_approvals(self, now: datetime) -> int: ...

    async def decide_approval(self, approval_id: str, user_id: UserId, now: datetime, state: ApprovalState,
                              audit: Sequence[AuditEvent]) -> bool:
        """Move a pending, unexpired approval of ``user_id`` to ``state`` (APPROVED or
        REFUSED; REFUSED also consumes its challenge, so the sign-in cannot go on). False,
        nothing written, when it is not pending any more, expired or not that user's."""
        ...

    async def accept_approval(self, challenge_hash: str, user_id: UserId, now: datetime,
                              audit: Sequence[AuditEvent], remember: RememberedDevice | None,
                              remember_hash: str | None) -> bool:
        """The sign-in takes its approved approval: APPROVED → USED, the challenge consumed,
        the user's counters reset, ``remember`` stored and ``audit`` written, atomically.
        False (nothing written) when it is not approved, already used or expired."""
        ...

    async def update_hard_lock(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> None:
        """Lock the user out until an administrator resets it (the user asked for it)."""
        ...

    def listen_decisions(self, listener: DecisionListener) -> None:
        """Tell ``listener`` of every approval decided from now on by any instance sharing
        the store (``mfad.core.approval_waits.DecisionFeed``)."""
        ...
