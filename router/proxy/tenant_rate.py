"""limits.tenant_rate: a token bucket per tenant, in this router process.

A stamp is shared by its tenants; one tenant's burst must not take the others' share of
it. Each tenant may send `burst` requests at once and `rate` per second after that; a
request beyond it is answered 429 with Retry-After, before a backend is chosen.

The buckets live in the proxy server and outlive reloads that keep the same rate and
burst. The clock is passed in, so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import math

# Buckets kept at most. Past it, the buckets that have filled up again (they hold nothing
# a new bucket would not) are dropped; if that is not enough, the longest idle half goes.
MAX_TENANTS = 100_000


class TenantRate:
    __slots__ = ("rate", "burst", "max_tenants", "buckets")

    def __init__(self, rate: float, burst: int, max_tenants: int = MAX_TENANTS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_tenants = max_tenants
        self.buckets: dict[str, list[float]] = {}      # tenant -> [tokens, when last taken]

    def take(self, tenant: str, now: float) -> float:
        """0.0 when the request may go; else the seconds until it could."""
        bucket = self.buckets.get(tenant)
        if bucket is None:
            if len(self.buckets) >= self.max_tenants:
                self._prune(now)
            self.buckets[tenant] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """Whole seconds for Retry-After: at least 1, never earlier than the bucket allows."""
        return max(1, math.ceil(wait))

    def _prune(self, now: float) -> None:
        rate, burst = self.rate, self.burst
        kept = {t: b for t, b in self.buckets.items() if b[0] + (now - b[1]) * rate < burst}
        if len(kept) >= self.max_tenants:
            by_age = sorted(kept.items(), key=lambda item: item[1][1])
            kept = dict(by_age[len(by_age) // 2:])
        self.buckets = kept


def tenant_rate_for(rate: float, burst: int | None, current: TenantRate | None) -> TenantRate | None:
    """The limiter a config asks for: the current one when rate and burst are unchanged
    (a reload keeps what tenants have used), a new one when they changed, None for none."""
    if rate <= 0:
        return None
    burst = burst if burst is not None else max(1, math.ceil(rate))
    if current is not None and current.rate == rate and current.burst == burst:
        return current
    return TenantRate(rate, burst)
