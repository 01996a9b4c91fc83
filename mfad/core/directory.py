"""The first factor checked by a directory (LDAP / Active Directory, an upstream RADIUS
server): the port the core declares and the directory adapters implement.

Guarantees the adapters keep: a password is sent only to the directory (never stored,
logged or cached); an unknown user costs the same round trips as a wrong password and
reads the same (``Check.REFUSED`` for both, the reason apart for the audit log); a
directory that cannot be reached raises ``Unavailable`` — never an accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Check(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


class DirectoryReason(StrEnum):
    """Why a directory refused: for the audit log and metrics only."""

    ACCEPTED = "accepted"
    UNKNOWN_USER = "directory_unknown_user"
    WRONG_PASSWORD = "directory_wrong_password"
    DISABLED = "directory_disabled"
    AMBIGUOUS = "directory_ambiguous_user"


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryEntry:
    """What a directory says about a user: profile data and groups, never a secret."""

    username: str
    display_name: str | None = None
    #: The profile email (never used as a security email).
    email: str | None = None
    #: Group names (an LDAP group's CN, or an upstream RADIUS Class/Filter-Id allowed by the
    #: client's allow-list), compared case-insensitively by the policy rules.
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryCheck:
    check: Check
    reason: DirectoryReason
    entry: DirectoryEntry | None = None
    #: What an upstream RADIUS server's Accept carried: (attribute name, octets) pairs, for
    #: the transport to copy the ones its client's allow-list names (opaque to the core).
    reply: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def accepted(self) -> bool:
        return self.check is Check.ACCEPTED


class Directory(Protocol):
    """One configured directory. ``name`` appears in the audit log and on provisioned users."""

    name: str
    #: Whether ``lookup`` can answer without the user's password (LDAP can; RADIUS cannot).
    can_look_up: bool

    async def authenticate(self, username: str, password: str) -> DirectoryCheck:
        """Check ``password`` for ``username``. Raises ``Unavailable`` when no server answered."""
        ...

    async def lookup(self, username: str) -> DirectoryEntry | None | DirectoryReason:
        """The entry of an active ``username`` (no password), ``None`` when the directory does
        not know it, ``DirectoryReason.DISABLED`` when it is disabled there. Raises
        ``Unavailable``. Called only when ``can_look_up``."""
        ...

    async def aclose(self) -> None: ...


def group_matches(wanted: str, groups: Sequence[str]) -> bool:
    """Whether ``wanted`` (a group name or DN) is among ``groups``, ignoring case."""
    folded = wanted.casefold()
    return any(g.casefold() == folded for g in groups)
