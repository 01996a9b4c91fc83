"""Administration use cases that combine several services (the admin API and ``mfactl``).

Guarantees: deleting a user removes their devices, remembered devices, sessions
and pending codes in one transaction with its audit row, and keeps every audit row
about them; setting a password revokes the user's remembered devices and
sessions (in the store, in the same transaction) and reports how many
remembered devices went; unbinding a lost device also ends the user's
sessions, since whoever holds the device may be signed in with it; every
change is audited with the administrator as the actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mfad.core.clock import Clock
from mfad.core.devices import DeviceListing, DeviceService
from mfad.core.model import AuditEvent, DeviceId, RememberedDevice
from mfad.core.outbox import EmailStore
from mfad.core.ports import DeviceStore, SignInStore, UserCounts, UserStore
from mfad.core.selfservice import revoke_remembered
from mfad.core.sessions import SessionStore
from mfad.core.users import UserService

MAX_REASON = 256
#: How far back the overview counts failed sign-ins.
FAILURE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    counts: UserCounts
    outbox_depth: int
    #: When the oldest message still waiting was queued (None: the outbox is empty).
    outbox_oldest: datetime | None


def clean_reason(reason: str) -> str | None:
    return reason[:MAX_REASON] or None


class AdminStore(UserStore, DeviceStore, SessionStore, SignInStore, EmailStore, Protocol):
    """The store as the administration service uses it: users, their devices, sessions and
    remembered devices, the outbox's depth."""


class AdminService:
    def __init__(self, *, store: AdminStore, clock: Clock, users: UserService, devices: DeviceService) -> None:
        self._store = store
        self._clock = clock
        self._users = users
        self._devices = devices

    async def overview(self) -> Overview:
        """The console's first page: counted by the store, never by listing users."""
        now = self._clock.now()
        counts = await self._store.count_users(now, now - FAILURE_WINDOW)
        depth, oldest = await self._store.outbox_depth()
        return Overview(counts=counts, outbox_depth=depth, outbox_oldest=oldest)

    async def set_password(self, username: str, password: str | None, *, actor: str | None) -> int:
        """Set (or, with None, clear) the password; returns how many remembered devices it revoked."""
        user = await self._users.get(username)
        before = len(await self._store.list_remembered(user.id, self._clock.now()))
        await self._users.set_password(username, password, actor=actor)
        return before

    async def unbind(self, username: str, device_id: DeviceId, *, actor: str | None, reason: str = "") -> DeviceListing:
        """The lost-device path: no proof from the user needed."""
        device = await self._devices.unbind(username, device_id, actor=actor, as_admin=True,
                                            reason=clean_reason(reason))
        now = self._clock.now()
        await self._store.delete_sessions(device.user_id, now, [AuditEvent(
            event="sessions_revoked", outcome="ok", user_id=device.user_id, username=username, actor=actor,
            reason="device unbound by an administrator")])
        return await self._devices.list(username)

    async def delete_user(self, username: str, *, actor: str | None, reason: str = "") -> int:
        """Remove the user with their devices, remembered devices, sessions and pending codes;
        the audit trail keeps every row about them. Returns how many devices went."""
        user = await self._users.get(username)
        devices = await self._store.load_devices(user.id)
        await self._store.delete_user(user.id, self._clock.now(), [AuditEvent(
            event="user_deleted", outcome="ok", user_id=user.id, username=user.username, actor=actor,
            reason=clean_reason(reason), detail=f"devices={len(devices)}")])
        return len(devices)

    async def list_remembered(self, username: str) -> list[RememberedDevice]:
        user = await self._users.get(username)
        return await self._store.list_remembered(user.id, self._clock.now())

    async def revoke_remembered(self, username: str, series: str | None, *, actor: str | None) -> int:
        user = await self._users.get(username)
        return await revoke_remembered(self._store, self._clock.now(), user.id, user.username, series, actor=actor)
