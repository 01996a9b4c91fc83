"""Network sessions as the access servers report them (start, interim update, stop).

A VPN concentrator or Wi-Fi controller tells when a session it let in starts, how it
goes and when it ends. mfad keeps these reports as audit rows (event
``nas_session``), so an operator sees next to a user's sign-ins where and how long
they were connected; they are pruned after their own retention period, shorter than
the audit trail's, since a busy NAS reports every few minutes per session.

Guarantee: :meth:`SessionLog.record` returns only once the row is stored (a transport
acknowledges a report only then, RFC 2866 §2: a report the server could not record
gets no answer and is sent again); the store unavailable raises
:class:`~mfad.core.errors.Unavailable`. The report's text is bounded and never
carries a password; the username is what the NAS said, not checked against users.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from mfad.core.clock import Clock
from mfad.core.model import AuditEvent
from mfad.core.ports import AuditStore

SESSION_EVENT: Final = "nas_session"
"""The audit event of a session report (its outcome is the :class:`SessionStatus`)."""

_MAX_TEXT: Final = 128
"""Longest username, session id or NAS text kept: reports are NAS-made, not trusted."""


class SessionStatus(StrEnum):
    START = "start"
    INTERIM = "interim"
    STOP = "stop"
    NAS_ON = "nas_on"
    """The NAS started (every session it had is gone)."""
    NAS_OFF = "nas_off"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionReport:
    """One report of a NAS about one session (or about itself, for NAS_ON/NAS_OFF)."""

    status: SessionStatus
    nas: str
    """The configured name of the NAS that reported."""
    protocol: str
    username: str | None = None
    session_id: str | None = None
    station: str | None = None
    """Where the user connects from, as the NAS says (Calling-Station-Id)."""
    seconds: int | None = None
    octets_in: int | None = None
    octets_out: int | None = None
    cause: int | None = None
    """Why the session ended (RFC 2866 Acct-Terminate-Cause), on a stop."""

    def detail(self) -> str:
        parts = [f"session={_bounded(self.session_id)}" if self.session_id is not None else None,
                 f"station={_bounded(self.station)}" if self.station is not None else None,
                 f"seconds={self.seconds}" if self.seconds is not None else None,
                 f"in={self.octets_in}" if self.octets_in is not None else None,
                 f"out={self.octets_out}" if self.octets_out is not None else None,
                 f"cause={self.cause}" if self.cause is not None else None]
        return " ".join(part for part in parts if part is not None)


def _bounded(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = "".join(ch if ch.isprintable() and not ch.isspace() else "_" for ch in text)
    return cleaned[:_MAX_TEXT]


class SessionLog:
    """Records session reports in the audit trail."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(self, report: SessionReport) -> None:
        event = AuditEvent(event=SESSION_EVENT, outcome=report.status.value, username=_bounded(report.username),
                           protocol=report.protocol, source=f"nas:{_bounded(report.nas)}",
                           detail=report.detail() or None)
        await self._store.append_audit(self._clock.now(), [event])


__all__ = ["SESSION_EVENT", "SessionLog", "SessionReport", "SessionStatus"]
