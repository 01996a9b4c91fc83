"""The first factor: whether what a user typed as the password is right.

The sign-in service asks one :class:`FirstFactorCheck` for every request that brings a
password (:class:`~mfad.core.verification.Password`, :class:`~mfad.core.verification.PasswordThenCode`);
a request marked :data:`~mfad.core.verification.VOUCHED` skips it (the caller checked the
password: a RADIUS ``otp_only`` NAS, a gRPC service caller). Today's only check is
:class:`LocalPasswordCheck`, argon2id against the hash in the store. A directory (LDAP)
or an upstream RADIUS server is another implementation of this port, handed to
``SignInService(first_factor=...)``.

:class:`FirstFactorRouter` picks the check per sign-in: the local one, or a directory
(LDAP / Active Directory, an upstream RADIUS server — ``mfad.core.directory``) named for
the RADIUS client or the gRPC side. A directory's answer carries the user's profile and
groups: the service provisions a directory user who has no record yet.

Guarantees every implementation keeps:
- the answer passes only for a known user whose password matched (a directory's user is
  known to the directory; the service then provisions the local record);
- an unknown user costs the same work as a known one and says False (the local check
  verifies against a dummy hash), so timing tells nothing;
- faults (``Unavailable`` …) propagate: never an accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mfad.core.directory import Directory, DirectoryEntry, DirectoryReason
from mfad.core.model import User
from mfad.core.passwords import PasswordHasher

#: The first-factor names that are not directories.
LOCAL = "local"
NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstFactorVerdict:
    ok: bool
    #: The directory that judged (None: the local check).
    directory: str | None = None
    #: What the directory said about the user (only when ``ok``).
    entry: DirectoryEntry | None = None
    #: Why a directory refused: for the audit log only.
    reason: DirectoryReason | None = None
    #: An upstream RADIUS server's reply attributes (see ``DirectoryCheck.reply``).
    reply: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def __bool__(self) -> bool:
        return self.ok


class FirstFactorCheck(Protocol):
    async def check(self, username: str, user: User | None, password: str, *, lane: str,
                    client: str | None = None, protocol: str = "") -> FirstFactorVerdict:
        """Whether ``password`` is ``username``'s (``user`` is their local record, None when
        there is none). ``lane`` is who asks (a RADIUS client's name, the protocol): checks
        share a bounded worker pool fairly between lanes. ``client`` and ``protocol`` say
        where the sign-in came from (a router picks the check by them)."""
        ...


class LocalPasswordCheck:
    """The password against the argon2id hash stored with the user."""

    def __init__(self, passwords: PasswordHasher) -> None:
        self._passwords = passwords

    async def check(self, username: str, user: User | None, password: str, *, lane: str,
                    client: str | None = None, protocol: str = "") -> FirstFactorVerdict:
        ok = await self._passwords.verify(user.password_hash if user else None, password, lane=lane)
        return FirstFactorVerdict(ok=ok)


class FirstFactorRouter:
    """The check a sign-in gets: by its RADIUS client's name (``by_client``), else by its
    protocol (``by_protocol``: "grpc"), else the local check. ``Unavailable`` from a
    directory propagates: never an accept."""

    def __init__(self, local: FirstFactorCheck, directories: Mapping[str, Directory], *,
                 by_client: Mapping[str, str], by_protocol: Mapping[str, str],
                 reply_allowed: Mapping[str, frozenset[str]] | None = None) -> None:
        """``reply_allowed``: per RADIUS client name, the upstream reply attributes its
        sign-ins may carry on (``upstream_reply_attributes``); every other one is dropped
        here, before anything is stored."""
        for source in (*by_client.values(), *by_protocol.values()):
            if source not in (LOCAL, NONE) and source not in directories:
                raise ValueError(f"first factor {source!r} names no directory")
        self._local = local
        self._directories = dict(directories)
        self._by_client = dict(by_client)
        self._by_protocol = dict(by_protocol)
        self._reply_allowed = dict(reply_allowed or {})

    def source(self, client: str | None, protocol: str) -> str:
        if client is not None and client in self._by_client:
            return self._by_client[client]
        return self._by_protocol.get(protocol, LOCAL)

    async def check(self, username: str, user: User | None, password: str, *, lane: str,
                    client: str | None = None, protocol: str = "") -> FirstFactorVerdict:
        directory = self._directories.get(self.source(client, protocol))
        if directory is None:
            return await self._local.check(username, user, password, lane=lane, client=client, protocol=protocol)
        found = await directory.authenticate(username, password)
        allowed = self._reply_allowed.get(client or "", frozenset())
        reply = tuple((name, value) for name, value in found.reply if name in allowed) if found.accepted else ()
        return FirstFactorVerdict(ok=found.accepted, directory=directory.name, entry=found.entry,
                                  reason=None if found.accepted else found.reason, reply=reply)
