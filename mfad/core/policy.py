"""The global MFA policy: stored, cached briefly, changed only with an audit row.

Guarantee: every instance sees a change within ``CACHE_SECONDS``; the instance
that made it sees it at once. Turning "remember this device" off revokes every
remembered device in the same transaction.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput
from mfad.core.model import AuditEvent, Method, MfaRequired, Policy
from mfad.core.ports import PolicyStore

CACHE_SECONDS = 2.0  # bounds how stale another instance's policy change can be


class PolicyService:
    def __init__(self, store: PolicyStore, clock: Clock, initial: Policy, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic  # the cache's age: elapsed time, whatever the wall clock does
        self._initial = initial
        self._cached: Policy | None = None
        self._cached_at = 0.0

    async def seed(self) -> None:
        """Write the configured initial policy once, if the store has none yet."""
        await self._store.save_policy(self._initial, self._clock.now(), [AuditEvent(
            event="policy_changed", outcome="ok", actor="config", detail=_describe(self._initial))],
            only_if_absent=True)

    async def current(self) -> Policy:
        if self._cached is not None and self._monotonic() - self._cached_at < CACHE_SECONDS:
            return self._cached
        policy = await self._store.load_policy() or self._initial
        self._cached, self._cached_at = policy, self._monotonic()
        return policy

    async def update(self, *, actor: str | None, **changes: Any) -> Policy:
        """Change some fields. Unknown fields or bad values raise InvalidInput naming the field."""
        old = await self.current()
        known = {f.name for f in dataclasses.fields(Policy)}
        for name in changes:
            if name not in known:
                raise InvalidInput(name, "is not a policy field")
        new = _validated(dataclasses.replace(old, **changes))
        revoke = old.remember_device and not new.remember_device
        await self._store.save_policy(new, self._clock.now(), [AuditEvent(
            event="policy_changed", outcome="ok", actor=actor, detail=_describe(new))], revoke_remembered=revoke)
        self._cached, self._cached_at = new, self._monotonic()
        return new


def _validated(p: Policy) -> Policy:
    try:
        mfa = MfaRequired(p.mfa_required)
    except ValueError:
        raise InvalidInput("mfa_required", "must be all, enrolled or off") from None
    try:
        methods = frozenset(Method(m) for m in p.allowed_methods)
    except ValueError:
        raise InvalidInput("allowed_methods", "must be passkey, totp, email, u2f or recovery") from None
    if not methods:
        raise InvalidInput("allowed_methods", "must allow at least one method")
    if not 1 <= p.remember_days <= 365:
        raise InvalidInput("remember_days", "must be between 1 and 365")
    if not 30 <= p.sensitive_reauth_seconds <= 86400:
        raise InvalidInput("sensitive_reauth_seconds", "must be between 30 and 86400")
    return dataclasses.replace(p, mfa_required=mfa, allowed_methods=methods)


def _describe(p: Policy) -> str:
    return (f"mfa_required={p.mfa_required} allowed_methods={','.join(sorted(p.allowed_methods))} "
            f"self_service={p.self_service} remember_device={p.remember_device} remember_days={p.remember_days} "
            f"sensitive_reauth_seconds={p.sensitive_reauth_seconds} "
            f"require_backup_method={p.require_backup_method}")
