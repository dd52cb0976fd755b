"""limits.tenant_rate: a token bucket per tenant, for the router as a whole.

A stamp is shared by its tenants; one tenant's burst must not take the others' share of
it. Each tenant may send `burst` requests at once and `rate` per second after that; a
request beyond it is answered 429 with Retry-After, before a backend is chosen.

The buckets live in the proxy server and outlive reloads that keep the same rate and
burst. The clock is passed in, so the arithmetic is tested without waiting.

With several workers each keeps its own buckets, holding a share of each tenant's rate
and burst (`SharedTenantRate`): the supervisor moves the shares towards the workers the
tenant's requests arrive at (router.process.rate_shares), so a tenant whose requests all
come on one keep-alive connection, to one worker, still gets its whole rate.
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


class SharedTenantRate(TenantRate):
    """A worker's part of the router's limit: per tenant, `share` of the rate and burst
    (`default_share` for a tenant the supervisor has not spoken of), and the requests seen
    per tenant since the supervisor last asked (`take_demand`)."""

    __slots__ = ("shares", "default_share", "demand")

    def __init__(self, rate: float, burst: int, default_share: float, max_tenants: int = MAX_TENANTS) -> None:
        super().__init__(rate, burst, max_tenants)
        self.shares: dict[str, float] = {}
        self.default_share = default_share
        self.demand: dict[str, int] = {}

    def take(self, tenant: str, now: float) -> float:
        demand = self.demand
        demand[tenant] = demand.get(tenant, 0) + 1
        share = self.shares.get(tenant, self.default_share)
        rate, burst = self.rate * share, max(1.0, self.burst * share)
        bucket = self.buckets.get(tenant)
        if bucket is None:
            if len(self.buckets) >= self.max_tenants:
                self._prune(now)
            self.buckets[tenant] = [burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > burst:
            tokens = burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate

    def take_demand(self) -> dict[str, int] | None:
        if not self.demand:
            return None
        out, self.demand = self.demand, {}
        return out


def tenant_rate_for(rate: float, burst: int | None, current: TenantRate | None,
                    workers: int = 1) -> TenantRate | None:
    """The limiter a config asks for: the current one when rate and burst are unchanged
    (a reload keeps what tenants have used), a new one when they changed, None for none.
    With several workers, a SharedTenantRate starting from an even share."""
    if rate <= 0:
        return None
    burst = burst if burst is not None else max(1, math.ceil(rate))
    if current is not None and current.rate == rate and current.burst == burst:
        return current
    if workers > 1:
        return SharedTenantRate(rate, burst, 1.0 / workers)
    return TenantRate(rate, burst)
