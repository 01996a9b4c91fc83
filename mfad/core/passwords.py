"""First factor: argon2id password hashes, verified off the event loop, and the
policy a new password must pass.

Guarantees: verifying the password of an unknown user or of a user without a
password does the same argon2 work as a real verification (against a dummy
hash made at start), so timing does not reveal which usernames exist. Hashing
runs at most ``max_concurrent`` at a time, and waiting for it is fair between
lanes (a RADIUS client, a gRPC caller): when a slot frees it goes to the next
lane with work in round-robin order, so a lane flooding the hasher makes every
other lane wait for at most one hash per busy lane, never for its backlog.

A new local password is at least ``min_length`` (12) and at most ``max_length``
(256) characters and, unless turned off, is refused when it is — or, with digits
and symbols around it, in "leet" spelling or repeated, is built on — one of the
bundled most common passwords, the username, or has fewer than 4 different
characters. Existing passwords are never re-checked: the policy applies when
one is set.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mfad.core.errors import InvalidInput

T = TypeVar("T")

MAX_PASSWORD_BYTES = 1024  # argon2 hashes anything; an unbounded input is a CPU/memory lever


def check_password_input(password: str) -> None:
    if not password:
        raise InvalidInput("password", "must not be empty")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise InvalidInput("password", f"must be at most {MAX_PASSWORD_BYTES} bytes")
    if "\x00" in password:
        raise InvalidInput("password", "must not contain NUL")


class FairSlots:
    """``slots`` units of work at a time, handed out round-robin between lanes.

    A lane's waiters are served in arrival order; lanes take turns. A waiter cancelled
    before its turn leaves the queue; one cancelled just after being handed a slot
    passes the slot on."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lanes: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._lanes.values())

    async def run(self, lane: str, work: Callable[[], asyncio.Future[T]]) -> T:
        await self._acquire(lane)
        try:
            return await work()
        finally:
            self._release()

    async def _acquire(self, lane: str) -> None:
        if self._free > 0 and not self._lanes:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(lane, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted, then cancelled: pass the slot on
            else:
                queue = self._lanes.get(lane)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._lanes[lane]
            raise

    def _release(self) -> None:
        while self._lanes:
            lane, queue = next(iter(self._lanes.items()))
            waiter = queue.popleft()
            if queue:
                self._lanes.move_to_end(lane)  # its turn is over: the next lane goes first
            else:
                del self._lanes[lane]
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to it
                return
        self._free += 1


#: Digits and symbols people put around a word ("Summer2026!", "#1dragon").
_AFFIXES = re.compile(r"^[\d\W_]+|[\d\W_]+$")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
MIN_DISTINCT_CHARACTERS = 4


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("mfad.core").joinpath("data/common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _period(text: str) -> str:
    """The shortest unit that ``text`` repeats ("passwordpassword" → "password")."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordPolicy:
    min_length: int = 12
    max_length: int = 256
    refuse_common: bool = True

    def check(self, password: str, *, username: str | None = None) -> None:
        """InvalidInput("password", why) when ``password`` may not be set."""
        check_password_input(password)
        if len(password) < self.min_length:
            raise InvalidInput("password", f"must be at least {self.min_length} characters")
        if len(password) > self.max_length:
            raise InvalidInput("password", f"must be at most {self.max_length} characters")
        if not self.refuse_common:
            return
        folded = unicodedata.normalize("NFC", password).casefold()
        compact = "".join(folded.split())
        if len(set(compact)) < MIN_DISTINCT_CHARACTERS:
            raise InvalidInput("password", f"must have at least {MIN_DISTINCT_CHARACTERS} different characters")
        forms = {compact, compact.rstrip("!?.*#$%&+-_=~"), _AFFIXES.sub("", compact)} - {""}
        forms |= {f.translate(_LEET) for f in forms}
        forms |= {_period(f) for f in forms}
        if username is not None and username.casefold() in forms:
            raise InvalidInput("password", "must not be the username")
        if forms & common_passwords():
            raise InvalidInput("password", "is one of the most common passwords (or built on one): "
                                           "choose a longer passphrase")


class PasswordHasher:
    """argon2id with bounded, fair concurrency: each hash takes ``memory_kib`` of RAM."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4,
                 max_concurrent: int = 2) -> None:
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_kib,
                              parallelism=parallelism, type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="argon2")
        self._slots = FairSlots(max_concurrent)
        started = time.perf_counter()
        self._dummy_hash = self._argon.hash(secrets.token_urlsafe(16))
        #: Verifications per second this hasher can sustain, from the hash made at start
        #: (one hash alone, so an estimate from above when the cores are shared).
        self.capacity = max_concurrent / max(time.perf_counter() - started, 1e-6)

    async def hash(self, password: str) -> str:
        check_password_input(password)
        loop = asyncio.get_running_loop()
        return await self._slots.run("", lambda: loop.run_in_executor(self._pool, self._argon.hash, password))

    def _verify_sync(self, stored: str | None, password: str) -> bool:
        try:
            return self._argon.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str, lane: str = "") -> bool:
        """True only for a real hash that matches; ``None`` burns the same time and says False.
        ``lane`` is who asks (a RADIUS client's name): lanes share the hasher fairly."""
        loop = asyncio.get_running_loop()
        return await self._slots.run(lane, lambda: loop.run_in_executor(self._pool, self._verify_sync, stored,
                                                                         password))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
