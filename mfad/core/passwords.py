"""First factor: argon2id password hashes, verified off the event loop.

Guarantee: verifying the password of an unknown user or of a user without a
password does the same argon2 work as a real verification (against a dummy
hash made at start), so timing does not reveal which usernames exist.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mfad.core.errors import InvalidInput

MAX_PASSWORD_BYTES = 1024  # argon2 hashes anything; an unbounded input is a CPU/memory lever


def check_password_input(password: str) -> None:
    if not password:
        raise InvalidInput("password", "must not be empty")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise InvalidInput("password", f"must be at most {MAX_PASSWORD_BYTES} bytes")
    if "\x00" in password:
        raise InvalidInput("password", "must not contain NUL")


class PasswordHasher:
    """argon2id with bounded concurrency: each hash takes ``memory_kib`` of RAM."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4,
                 max_concurrent: int = 2) -> None:
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_kib,
                              parallelism=parallelism, type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="argon2")
        self._dummy_hash = self._argon.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        check_password_input(password)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._argon.hash, password)

    def _verify_sync(self, stored: str | None, password: str) -> bool:
        try:
            return self._argon.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        """True only for a real hash that matches; ``None`` burns the same time and says False."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify_sync, stored, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
