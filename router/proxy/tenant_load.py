"""Each tenant's work in flight in this worker, by the stamp it is on.

A move waits until nothing of the tenant (or no write of it) is still running on the old
stamp; that must be known, not guessed, so the proxy counts it: a request from the moment
it is forwarded (decided to a stamp) until it ends, writes (methods that are not safe,
RFC 9110 9.2.1) apart, and WebSocket (Upgrade) tunnels from the backend's 101 until either
side closes. The supervisor sums the workers' counts (router.process).

Only tenants with something in flight have an entry, so the table is as small as the
work in flight, and a count costs a dict lookup at each end of a request.
"""

from __future__ import annotations

from typing import Any

SAFE = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
REQUESTS, WRITES, TUNNELS = range(3)


class TenantLoad:
    __slots__ = ("counts", "tunnels")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[int]] = {}      # (tenant, stamp) -> [requests, writes, tunnels]
        self.tunnels: dict[Any, tuple[str, str]] = {}           # upstream connection -> (tenant, stamp)

    def started(self, tenant: str, stamp: str, method: bytes) -> None:
        key = (tenant, stamp)
        c = self.counts.get(key)
        if c is None:
            c = self.counts[key] = [0, 0, 0]
        c[REQUESTS] += 1
        if method not in SAFE:
            c[WRITES] += 1

    def ended(self, tenant: str, stamp: str, method: bytes) -> None:
        key = (tenant, stamp)
        c = self.counts.get(key)
        if c is None:                # never counted: a miscount must not fail a request
            return
        c[REQUESTS] -= 1
        if method not in SAFE:
            c[WRITES] -= 1
        if not (c[REQUESTS] or c[TUNNELS]):
            del self.counts[key]

    def tunnel_opened(self, upstream: Any, tenant: str, stamp: str) -> None:
        key = (tenant, stamp)
        self.tunnels[upstream] = key
        c = self.counts.get(key)
        if c is None:
            c = self.counts[key] = [0, 0, 0]
        c[TUNNELS] += 1

    def tunnel_closed(self, upstream: Any) -> None:
        key = self.tunnels.pop(upstream, None)
        if key is None:
            return
        c = self.counts[key]
        c[TUNNELS] -= 1
        if not (c[REQUESTS] or c[TUNNELS]):
            del self.counts[key]

    def of(self, tenant: str) -> dict[str, list[int]]:
        """stamp -> [requests, writes, tunnels] of one tenant."""
        return {stamp: list(c) for (t, stamp), c in self.counts.items() if t == tenant}
