"""The first factor: whether what a user typed as the password is right.

The sign-in service asks one :class:`FirstFactorCheck` for every request that brings a
password (:class:`~mfad.core.signin.Password`, :class:`~mfad.core.signin.PasswordThenCode`);
a request marked :data:`~mfad.core.signin.VOUCHED` skips it (the caller checked the
password: a RADIUS ``otp_only`` NAS, a gRPC service caller). Today's only check is
:class:`LocalPasswordCheck`, argon2id against the hash in the store. A directory (LDAP)
or an upstream RADIUS server is another implementation of this port, handed to
``SignInService(first_factor=...)``.

Guarantees every implementation keeps:
- the answer is True only for a known user (``user`` not None) whose password matched;
- an unknown user costs the same work as a known one and says False (the local check
  verifies against a dummy hash), so timing tells nothing;
- faults (``Unavailable`` …) propagate: never an accept.
"""

from __future__ import annotations

from typing import Protocol

from mfad.core.model import User
from mfad.core.passwords import PasswordHasher


class FirstFactorCheck(Protocol):
    async def check(self, username: str, user: User | None, password: str, *, lane: str) -> bool:
        """Whether ``password`` is ``username``'s (``user`` is their local record, None when
        there is none). ``lane`` is who asks (a RADIUS client's name, the protocol): checks
        share a bounded worker pool fairly between lanes."""
        ...


class LocalPasswordCheck:
    """The password against the argon2id hash stored with the user."""

    def __init__(self, passwords: PasswordHasher) -> None:
        self._passwords = passwords

    async def check(self, username: str, user: User | None, password: str, *, lane: str) -> bool:
        return await self._passwords.verify(user.password_hash if user else None, password, lane=lane)
