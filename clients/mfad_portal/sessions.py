"""Portal sessions: what the browser's cookie names, kept server-side.

Guarantees: the cookie holds only a random 256-bit id; everything else (the
CSRF token, mfad's user session token, a sign-in in progress) stays in this
process's memory and never reaches the browser. A session ends after
``idle`` seconds without a request, ``absolute`` seconds after sign-in, or when
mfad's own session ends; a sign-in gets a new id (no session fixation). At most
``capacity`` sessions are kept: beyond that the least recently used go first,
so a flood of cookie-less requests cannot grow the memory without bound.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mfad_client.types import Session, SessionScope, StaffRole


@dataclass(slots=True)
class PortalSession:
    sid: str
    csrf: str
    created: float
    seen: float
    #: Set at sign-in (also for an enrolment session at first sign-in).
    username: str = ""
    token: str | None = field(default=None, repr=False)
    scope: SessionScope | None = None
    signed_in_at: float | None = None
    #: The console role mfad reported at sign-in: only whether to show the Console link.
    console_role: StaffRole | None = None
    #: What a full session signed in without a device owes before binding one (mfad's
    #: ``enrolment_proof``: "access_code" or "email_code"); "" when nothing is owed.
    proof_owed: str = ""
    #: A step in progress: a sign-in challenge, a binding, a step-up (never a password).
    pending: dict[str, Any] = field(default_factory=dict, repr=False)
    #: A message for the next page ("Your passkey was created.").
    flash: str = ""

    @property
    def is_signed_in(self) -> bool:
        return self.token is not None and self.scope is SessionScope.FULL

    @property
    def is_enrolling(self) -> bool:
        return self.token is not None and self.scope is SessionScope.ENROLMENT


class Sessions:
    def __init__(self, *, idle: float, absolute: float, capacity: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle
        self._absolute = absolute
        self._capacity = capacity
        self._clock = clock
        self._by_id: OrderedDict[str, PortalSession] = OrderedDict()

    def new(self) -> PortalSession:
        now = self._clock()
        session = PortalSession(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, seen=now)
        self._by_id[session.sid] = session
        while len(self._by_id) > self._capacity:
            self._by_id.popitem(last=False)
        return session

    def get(self, sid: str | None) -> PortalSession | None:
        """The live session ``sid`` names; None when unknown or timed out (then it is gone)."""
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > self._idle or (
                session.signed_in_at is not None and now - session.signed_in_at > self._absolute):
            self.drop(session)
            return None
        session.seen = now
        self._by_id.move_to_end(sid)
        return session

    def sign_in(self, old: PortalSession, username: str, session: Session) -> PortalSession:
        """A new id (and CSRF token) for a signed-in user; the old session is gone."""
        self.drop(old)
        fresh = self.new()
        fresh.username, fresh.token, fresh.scope = username, session.token, session.scope
        fresh.signed_in_at = fresh.created
        fresh.console_role = session.console_role
        if session.scope is SessionScope.FULL and session.proof_owed is not None:
            fresh.proof_owed = session.proof_owed.value
        return fresh

    def drop(self, session: PortalSession) -> None:
        self._by_id.pop(session.sid, None)

    def __len__(self) -> int:
        return len(self._by_id)
