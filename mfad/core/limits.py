"""Rate limits and lock-outs that resist lock-out abuse.

Guarantees (all state in the store, so every instance and protocol shares it):
- per user, consecutive failures across every method lead to a lock-out whose
  delay doubles (default 10 failures → 60 s, 120 s, … capped at 1 h); a success
  resets it; after ``hard_lock_after`` failures without a success (default 100)
  only an administrator can unlock, so guessing is bounded;
- every verification that could succeed counts: a repeated identical wrong code
  counts once only while it meets the very candidates it already failed against
  (the same TOTP step, the same mailed codes), so a VPN client reconnecting with a
  saved stale code costs its user one failure per 30 s step, not one per packet,
  and a fixed code sent once a step is a fresh guess every time and counts;
- per (user, source), failures beyond a few (default 5) put that source on a
  growing back-off; while it waits its attempts are refused without being
  verified, and one source's failures count towards the user's lock-out only
  up to that number, so one noisy source cannot lock a user out everywhere
  (the hard-lock total still counts them all: guessing stays bounded);
- per source, a token bucket of failures bounds spraying across many users;
- unknown usernames never touch a real user's counters.
The caller sees the same refusal for all of these; the reason goes to the
audit log and metrics only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mfad.core.settings import LimitSettings
from mfad.core.model import AuditEvent, LimitState, UserId
from mfad.core.ports import LimitChange


class Block(StrEnum):
    LOCKED = "locked"
    HARD_LOCKED = "hard_locked"
    SOURCE_BACKOFF = "source_backoff"
    SOURCE_RATE = "source_rate_limited"


@dataclass(frozen=True, slots=True)
class LimitRules:
    settings: LimitSettings

    def blocked(self, state: LimitState, bucket: tuple[float, datetime] | None, now: datetime) -> Block | None:
        """Why an attempt must be refused before it is verified, or None."""
        if state.hard_locked:
            return Block.HARD_LOCKED
        if state.locked_until is not None and now < state.locked_until:
            return Block.LOCKED
        if state.source_blocked_until is not None and now < state.source_blocked_until:
            return Block.SOURCE_BACKOFF
        if bucket is not None and self.settings.source_failure_rate > 0:
            if self.bucket_level(bucket[0], bucket[1], now) < 1.0:
                return Block.SOURCE_RATE
        return None

    def bucket_level(self, tokens: float | None, updated_at: datetime | None, now: datetime) -> float:
        s = self.settings
        if tokens is None or updated_at is None:
            return float(s.source_failure_burst)
        elapsed = max(0.0, (now - updated_at).total_seconds())
        return min(float(s.source_failure_burst), tokens + elapsed * s.source_failure_rate)

    def drain_bucket(self, now: datetime) -> "BucketDrain":
        return BucketDrain(self, now)

    def after_failure(self, state: LimitState, now: datetime, wrong_hash: str | None, *,
                      user_id: UserId, username: str, source: str | None) -> LimitChange:
        """The counters after one failed attempt (pure: the store applies it under lock)."""
        s = self.settings
        if wrong_hash is not None and state.last_wrong_hash == wrong_hash:
            return LimitChange(state=state)  # the same code against the same candidates: cannot succeed
        total = state.total_failures + 1
        source_failures = state.source_failures + 1
        # One source contributes at most ``source_failures_before_backoff`` failures to the
        # user's lock-out counter; beyond that only its own back-off grows.
        counts_for_user = source is None or source_failures <= s.source_failures_before_backoff
        failures = state.failures + 1 if counts_for_user else state.failures
        source_blocked = state.source_blocked_until
        if source is not None and source_failures >= s.source_failures_before_backoff:
            over = source_failures - s.source_failures_before_backoff
            wait = min(s.source_backoff_max_seconds, s.source_backoff_seconds * 2 ** min(over, 20))
            source_blocked = now + timedelta(seconds=wait)
        locked_until = state.locked_until
        lockouts = state.lockouts
        hard = total >= s.hard_lock_after
        audit: list[AuditEvent] = []
        became_locked = False
        if hard and not state.hard_locked:
            became_locked = True
            audit.append(AuditEvent(event="lockout", outcome="hard_locked", user_id=user_id, username=username,
                                    source=source, reason=f"{total} consecutive failures; an administrator "
                                    "must reset the lock-out"))
        elif counts_for_user and failures >= s.max_failures:
            wait = min(s.lockout_max_seconds, s.lockout_seconds * 2 ** min(lockouts, 20))
            locked_until = now + timedelta(seconds=wait)
            lockouts += 1
            failures = 0
            became_locked = True
            audit.append(AuditEvent(event="lockout", outcome="locked", user_id=user_id, username=username,
                                    source=source, reason=f"locked for {wait} s after {s.max_failures} failures"))
        new = dataclasses.replace(state, failures=failures, total_failures=total, lockouts=lockouts,
                                  locked_until=locked_until, hard_locked=state.hard_locked or hard,
                                  last_wrong_hash=wrong_hash, source_failures=source_failures,
                                  source_blocked_until=source_blocked)
        return LimitChange(state=new, audit=audit, became_locked=became_locked)


@dataclass(frozen=True, slots=True)
class BucketDrain:
    rules: LimitRules
    now: datetime

    def __call__(self, tokens: float | None, updated_at: datetime | None) -> float:
        return max(0.0, self.rules.bucket_level(tokens, updated_at, self.now) - 1.0)
