"""Who waits for which approval's decision, and the store's feed that wakes them.

A decision is made on whichever instance serves the Approve sign-in page; the request
that waits for it (a held RADIUS request, a gRPC ``WatchChallenge``) may be on another.
The store tells every instance sharing it that an approval was decided
(:class:`DecisionFeed`: PostgreSQL ``LISTEN/NOTIFY``, sent in the deciding transaction;
SQLite, one host: the process that committed it), and :class:`ApprovalWaiters` — one
registry per process, keyed by the approval's challenge — wakes the waiters of that
approval. Nothing here polls.

Guarantees:
- a wake is only a hint: a woken waiter reads the approval from the store before it
  acts, so a lost, duplicated or foreign notification cannot approve anything;
- when the feed may have missed decisions (its channel reconnected), it says so
  (``None``) and every waiter is woken to look again;
- a waiter costs one small object and no task; callbacks run on the event loop, must
  not block and must not raise (a raising callback is logged and the others still run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from mfad.core.approval_records import DecisionListener
from mfad.core.verification import challenge_hash

log = logging.getLogger("mfad.approval")


class DecisionFeed(Protocol):
    """The store's part: tell ``listener`` about every approval decided by any instance
    sharing the store, from now on (the listener is kept until the store closes)."""

    def listen_decisions(self, listener: DecisionListener) -> None: ...


class Waiter:
    """One registration; ``cancel()`` when done (idempotent)."""

    __slots__ = ("_registry", "key", "wake")

    def __init__(self, registry: ApprovalWaiters, key: str, wake: Callable[[], None]) -> None:
        self._registry = registry
        self.key = key
        self.wake = wake

    def cancel(self) -> None:
        self._registry._remove(self)


class ApprovalWaiters:
    """The per-process registry of waiters, keyed by the challenge their approval belongs to."""

    def __init__(self, feed: DecisionFeed) -> None:
        self._by_key: dict[str, list[Waiter]] = {}
        feed.listen_decisions(self._decided)

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_key.values())

    def wait(self, challenge_id: str, wake: Callable[[], None]) -> Waiter:
        """Call ``wake()`` whenever the approval of ``challenge_id`` may have been decided.
        Register *before* reading the approval's state, so that no decision falls between."""
        waiter = Waiter(self, challenge_hash(challenge_id), wake)
        self._by_key.setdefault(waiter.key, []).append(waiter)
        return waiter

    async def until_woken(self, challenge_id: str, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for a wake of ``challenge_id``'s approval;
        False when the time ran out. For callers that have a task anyway (gRPC streams)."""
        woken = asyncio.Event()
        waiter = self.wait(challenge_id, woken.set)
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await woken.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiter.cancel()

    def _remove(self, waiter: Waiter) -> None:
        found = self._by_key.get(waiter.key)
        if found is None:
            return
        try:
            found.remove(waiter)
        except ValueError:
            return
        if not found:
            del self._by_key[waiter.key]

    def _decided(self, key: str | None) -> None:
        if key is None:
            woken = [w for waiters in self._by_key.values() for w in waiters]
        else:
            woken = list(self._by_key.get(key, ()))
        for waiter in woken:
            try:
                waiter.wake()
            except Exception:  # one waiter's bug must not keep the others asleep
                log.exception("approval waiter failed")
