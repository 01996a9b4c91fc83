"""Users and their first factor (administration side).

Guarantee: usernames are validated before any store access (no control
characters, bounded length); passwords are stored only as argon2id hashes and
setting one revokes the user's remembered devices in the same transaction.
"""

from __future__ import annotations

import unicodedata

from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput, NotFound
from mfad.core.model import AuditEvent, User, UserId
from mfad.core.passwords import PasswordHasher
from mfad.core.ports import UserStore

MAX_USERNAME_LENGTH = 256


def check_username(username: str, field: str = "username") -> None:
    if not username:
        raise InvalidInput(field, "must not be empty")
    if len(username) > MAX_USERNAME_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_USERNAME_LENGTH} characters")
    if any(unicodedata.category(ch)[0] in "CZ" and ch != " " for ch in username):
        # Control, format, surrogate, line/paragraph separators: never part of a name.
        raise InvalidInput(field, "must not contain control or separator characters")
    if username != username.strip():
        raise InvalidInput(field, "must not start or end with spaces")


class UserService:
    def __init__(self, store: UserStore, passwords: PasswordHasher, clock: Clock) -> None:
        self._store = store
        self._passwords = passwords
        self._clock = clock

    async def create(self, username: str, password: str | None, *, actor: str | None = None) -> User:
        check_username(username)
        password_hash = await self._passwords.hash(password) if password is not None else None

        def audit(user_id: UserId) -> list[AuditEvent]:
            return [AuditEvent(event="user_created", outcome="ok", user_id=user_id, username=username, actor=actor)]

        return await self._store.create_user(username, password_hash, self._clock.now(), audit)

    async def get(self, username: str) -> User:
        check_username(username)
        user = await self._store.load_user_by_name(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def list(self, *, after_id: int = 0, limit: int = 100, prefix: str | None = None) -> list[User]:
        if not 1 <= limit <= 1000:
            raise InvalidInput("page_size", "must be between 1 and 1000")
        return await self._store.list_users(after_id, limit, prefix)

    async def set_password(self, username: str, password: str | None, *, actor: str | None = None) -> None:
        user = await self.get(username)
        password_hash = await self._passwords.hash(password) if password is not None else None
        await self._store.update_password(user.id, password_hash, self._clock.now(), [AuditEvent(
            event="password_set", outcome="ok" if password_hash else "cleared", user_id=user.id,
            username=user.username, actor=actor)])

    async def set_disabled(self, username: str, disabled: bool, *, actor: str | None = None,
                           reason: str | None = None) -> None:
        user = await self.get(username)
        await self._store.update_user_disabled(user.id, disabled, self._clock.now(), [AuditEvent(
            event="user_disabled" if disabled else "user_enabled", outcome="ok", user_id=user.id,
            username=user.username, actor=actor, reason=reason or None)])
