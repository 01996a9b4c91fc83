"""A unique name taken by a concurrent change is the domain's AlreadyExists, never a driver error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mfad.core.clock import FixedClock
from mfad.core.errors import AlreadyExists
from mfad.core.model import CallerToken, Role
from mfad.core.ports import Store


async def test_racing_caller_tokens_with_one_name(store: Store, store_opener: Callable[[], Awaitable[Store]],
                                                  clock: FixedClock) -> None:
    other = await store_opener()
    results = await asyncio.gather(
        *(s.insert_caller_token("ops", Role.ADMIN, f"hash-{i}", clock.now(), [])
          for i, s in enumerate([store, other] * 10)),
        return_exceptions=True)
    created = [r for r in results if isinstance(r, CallerToken)]
    refused = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(created) == 1 and len(refused) == len(results) - 1, results
    assert [t.name for t in await store.list_caller_tokens()] == ["ops"]
