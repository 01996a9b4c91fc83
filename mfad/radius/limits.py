"""Per-client request rate limits for the RADIUS listener (token buckets).

Guarantee: over any interval of ``t`` seconds a client gets at most
``burst + rate * t`` packets past the limiter, so one flooding NAS (or a source
spoofing it) cannot take the whole event loop from the other clients and from gRPC.
A rate of 0 turns the limit off. Time comes from the caller (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final


class TokenBuckets:
    def __init__(self, *, rate: float, burst: float, per_key: Mapping[str, tuple[float, float]] | None = None) -> None:
        """``rate`` and ``burst`` for every key, or ``per_key[key]`` = (rate, burst)."""
        for r, b in [(rate, burst), *(per_key or {}).values()]:
            if r < 0 or b < 1:
                raise ValueError("rate must be >= 0 and burst >= 1")
        self._rate: Final = rate
        self._burst: Final = burst
        self._per_key: Final = dict(per_key or {})
        # key -> [tokens, last refill time]; one entry per configured client.
        self._buckets: dict[str, list[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        rate, burst = self._per_key.get(key, (self._rate, self._burst))
        if rate == 0:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [burst - 1, now]
            return True
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True
