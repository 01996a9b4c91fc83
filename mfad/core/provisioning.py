"""Users provisioned from a directory, kept in step with it: ``prune`` lists the mfad
users a directory no longer knows (or has disabled) and, when asked, disables them.

Guarantees: a user is listed only on the directory's own answer for that user — a
directory that cannot be reached raises ``Unavailable`` and nothing is disabled; local
users and users of other directories are never touched; each disabling writes its
audit row in the same transaction (and revokes remembered devices, challenges and
sessions, as any disabling does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from mfad.core.clock import Clock
from mfad.core.directory import Directory, DirectoryReason
from mfad.core.errors import InvalidInput
from mfad.core.model import AuditEvent, User
from mfad.core.ports import DirectoryUserStore, UserStore

PAGE = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Stale:
    """A provisioned user the directory no longer vouches for."""

    username: str
    directory: str
    #: "unknown" (removed from the directory) or "disabled" (disabled there).
    why: str
    #: Whether this call disabled the mfad user.
    disabled: bool


class ProvisioningStore(DirectoryUserStore, UserStore, Protocol):
    pass


class DirectoryUsers:
    def __init__(self, store: ProvisioningStore, clock: Clock, directories: Mapping[str, Directory]) -> None:
        self._store = store
        self._clock = clock
        self._directories = directories

    async def prune(self, directory: str | None = None, *, disable: bool, actor: str | None) -> list[Stale]:
        """The stale users of ``directory`` (every directory that can look users up, when
        None); with ``disable``, each is disabled in mfad."""
        if directory is not None and directory not in self._directories:
            raise InvalidInput("directory", f"no directory is named {directory!r}")
        if directory is not None and not self._directories[directory].can_look_up:
            raise InvalidInput("directory", f"{directory!r} cannot look users up (a RADIUS server needs a password)")
        found: list[Stale] = []
        for name, source in self._directories.items():
            if directory not in (None, name) or not source.can_look_up:
                continue
            after = 0
            while users := await self._store.list_directory_users(name, after, PAGE):
                for user in users:
                    if not user.disabled:
                        entry = await source.lookup(user.username)
                        if entry is None or entry is DirectoryReason.DISABLED:
                            found.append(await self._stale(user, name, entry, disable=disable, actor=actor))
                if len(users) < PAGE:
                    break
                after = users[-1].id
        return found

    async def _stale(self, user: User, directory: str, entry: DirectoryReason | None, *,
                     disable: bool, actor: str | None) -> Stale:
        why = "disabled" if entry is DirectoryReason.DISABLED else "unknown"
        if disable:
            await self._store.update_user_disabled(user.id, True, self._clock.now(), [AuditEvent(
                event="user_disabled", outcome="ok", user_id=user.id, username=user.username,
                actor=actor, reason=f"directory_{why}", detail=f"prune directory={directory}")])
        return Stale(username=user.username, directory=directory, why=why, disabled=disable)
