"""Per-tenant limits on connector tests: a rate (token bucket) and a concurrency cap.

A test makes the server open connections where a tenant says; without limits
one tenant could turn it into a port scanner or starve the others. The limits
are per process (per replica): with N replicas a tenant gets up to N times them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connectord.errors import RateLimitedError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    running: int = 0


class TestLimiter:
    """``async with limiter.slot(tenant_id, cost)`` or :class:`RateLimitedError`.

    ``what`` names what is limited in the refusal (the proxy limits requests per key)."""

    __test__ = False

    def __init__(self, rate_per_minute: int, concurrency: int, *, what: str = "tests") -> None:
        self.what = what
        self.rate = rate_per_minute / 60.0
        self.burst = float(max(1, min(rate_per_minute, 60)))
        self.concurrency = concurrency
        self._buckets: dict[str, _Bucket] = {}

    def _take(self, tenant_id: str, cost: int) -> _Bucket:
        now = time.monotonic()
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.running + 1 > self.concurrency:
            raise RateLimitedError(f"at most {self.concurrency} {self.what} may run at once", retry_after=1.0)
        if bucket.tokens < cost:
            wait = (cost - bucket.tokens) / self.rate
            raise RateLimitedError(
                f"rate limit reached: {round(self.rate * 60)} {self.what} per minute",
                retry_after=round(wait, 2),
            )
        bucket.tokens -= cost
        return bucket

    @asynccontextmanager
    async def slot(self, tenant_id: str, cost: int = 1) -> AsyncIterator[None]:
        """Hold one concurrent-test slot after paying ``cost`` tokens."""
        bucket = self._take(tenant_id, cost)
        bucket.running += 1
        try:
            yield
        finally:
            bucket.running -= 1
