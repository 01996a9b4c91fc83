"""The caller-token cache in front of the core's CallerService (real store, both engines)."""

from __future__ import annotations


import pytest

from mfad.api.callers import CachedCallers
from mfad.core.errors import Unavailable
from mfad.core.model import Role
from mfad.core.service import Mfa


class CountingCallers:
    """The core's CallerService, counting how often the store is asked."""

    def __init__(self, mfa: Mfa) -> None:
        self.mfa = mfa
        self.lookups = 0

    async def authenticate(self, token: str) -> object:
        self.lookups += 1
        return await self.mfa.callers.authenticate(token)


async def test_answers_are_reused_for_the_ttl_then_asked_again(mfa: Mfa) -> None:
    _, token = await mfa.callers.create("gw", Role.SERVICE)
    core = CountingCallers(mfa)
    elapsed = [0.0]
    cache = CachedCallers(core, ttl=0.3, negative_ttl=0.3, monotonic=lambda: elapsed[0])
    for _ in range(5):
        caller = await cache.authenticate(token)
        assert caller is not None and caller.name == "gw"
    assert core.lookups == 1
    for _ in range(3):
        assert await cache.authenticate("mfad_unknown") is None
    assert core.lookups == 2

    await mfa.callers.revoke("gw")  # as another instance (or `mfad token revoke`) would
    assert await cache.authenticate(token) is not None  # still cached: at most ttl seconds
    elapsed[0] += 0.35
    assert await cache.authenticate(token) is None
    assert core.lookups == 3


async def test_forget_drops_a_revoked_caller_at_once_and_the_cache_stays_bounded(mfa: Mfa) -> None:
    _, token = await mfa.callers.create("portal", Role.PORTAL)
    cache = CachedCallers(mfa.callers, ttl=60, max_entries=3)
    assert await cache.authenticate(token) is not None
    await mfa.callers.revoke("portal")
    cache.forget("portal")
    assert await cache.authenticate(token) is None
    for n in range(10):
        await cache.authenticate(f"mfad_bogus_{n}")
    assert len(cache._entries) == 3  # noqa: SLF001 - the bound is the point of this test


async def test_store_failures_are_not_cached(mfa: Mfa) -> None:
    _, token = await mfa.callers.create("gw", Role.SERVICE)

    class Failing:
        down = True

        async def authenticate(self, token: str) -> object:
            if self.down:
                raise Unavailable("store down")  # the fault a cut link causes (see tests/e2e)
            return await mfa.callers.authenticate(token)

    source = Failing()
    cache = CachedCallers(source)
    with pytest.raises(Unavailable):
        await cache.authenticate(token)
    source.down = False
    assert await cache.authenticate(token) is not None
