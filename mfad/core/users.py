"""Users and their first factor (administration side).

Guarantees: every username is normalised and validated before any store access
(:mod:`mfad.core.usernames`). A new local password must pass the password
policy; passwords are stored only as argon2id hashes and setting
one revokes the user's remembered devices in the same transaction.
"""

from __future__ import annotations

import unicodedata

from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput, NotFound
from mfad.core.model import AuditEvent, User, UserId
from mfad.core.passwords import PasswordHasher, PasswordPolicy
from mfad.core.ports import UserStore
from mfad.core.usernames import UsernameRules


class UserService:
    def __init__(self, store: UserStore, passwords: PasswordHasher, clock: Clock, *,
                 usernames: UsernameRules | None = None, password_policy: PasswordPolicy | None = None) -> None:
        self._store = store
        self._passwords = passwords
        self._clock = clock
        self.usernames = usernames or UsernameRules()
        self._password_policy = password_policy or PasswordPolicy()

    def normalize(self, username: str, field: str = "username") -> str:
        return self.usernames.normalize(username, field)

    async def new_password_hash(self, username: str, password: str | None) -> str | None:
        if password is None:
            return None
        self._password_policy.check(password, username=username)
        return await self._passwords.hash(password)

    async def create(self, username: str, password: str | None, *, actor: str | None = None) -> User:
        username = self.normalize(username)
        password_hash = await self.new_password_hash(username, password)

        def audit(user_id: UserId) -> list[AuditEvent]:
            return [AuditEvent(event="user_created", outcome="ok", user_id=user_id, username=username, actor=actor)]

        return await self._store.create_user(username, password_hash, self._clock.now(), audit)

    async def get(self, username: str) -> User:
        username = self.normalize(username)
        user = await self._store.load_user_by_name(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def list(self, *, after: str | None = None, limit: int = 100, prefix: str | None = None) -> list[User]:
        """Users ordered by username (code point order), ``limit`` of them after ``after``."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("page_size", "must be between 1 and 1000")
        if prefix and self.usernames.case_insensitive:
            prefix = unicodedata.normalize("NFC", prefix.casefold())
        return await self._store.list_users(after, limit, prefix)

    async def set_password(self, username: str, password: str | None, *, actor: str | None = None) -> None:
        user = await self.get(username)
        password_hash = await self.new_password_hash(user.username, password)
        await self._store.update_password(user.id, password_hash, self._clock.now(), [AuditEvent(
            event="password_set", outcome="ok" if password_hash else "cleared", user_id=user.id,
            username=user.username, actor=actor)])

    async def set_disabled(self, username: str, disabled: bool, *, actor: str | None = None,
                           reason: str | None = None) -> None:
        user = await self.get(username)
        await self._store.update_user_disabled(user.id, disabled, self._clock.now(), [AuditEvent(
            event="user_disabled" if disabled else "user_enabled", outcome="ok", user_id=user.id,
            username=user.username, actor=actor, reason=reason or None)])
