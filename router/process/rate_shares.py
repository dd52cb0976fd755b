"""limits.tenant_rate across workers: each worker holds a share of every tenant's rate,
and the supervisor moves the shares to where the tenant's requests arrive.

Dividing the rate by the worker count would give a tenant whose requests all come on one
keep-alive connection (so to one worker) 1/N of its rate. Instead every worker reports,
every REPORT_INTERVAL, how many requests each tenant sent it (its demand, admitted or
not), and the supervisor gives each worker a share proportional to the tenant's recent
demand there. A small floor (FLOOR, split among the workers) stays with every worker, so
a tenant's first request on another worker is not refused before the next rebalance;
the shares of a tenant always add up to 1, so the router as a whole never admits more
than the tenant's rate (plus its burst).

A tenant nobody has heard from for a while is forgotten: workers go back to an even
share for it.
"""

from __future__ import annotations

from typing import Callable

# The share of a tenant's rate kept spread over all workers, whatever its demand.
FLOOR = 0.05
# Weight of the newest interval in the smoothed demand: shares follow a move of the
# traffic within two or three intervals without swinging with every one.
SMOOTHING = 0.5
# Below this smoothed demand (requests per interval, all workers) a tenant is forgotten.
FORGET_BELOW = 0.05
# A share that moved less than this is not sent again.
RESEND_DELTA = 0.01


def shares_for(demand: dict[int, float], workers: list[int]) -> dict[int, float]:
    """worker -> share of one tenant's rate, from its demand per worker. Adds up to 1."""
    floor = FLOOR / len(workers)
    total = sum(demand.get(w, 0.0) for w in workers)
    if total <= 0:
        return {w: 1.0 / len(workers) for w in workers}
    return {w: floor + (1.0 - FLOOR) * demand.get(w, 0.0) / total for w in workers}


class RateShares:
    def __init__(self, send: Callable[[int, dict[str, float], list[str]], None]) -> None:
        self._send = send                                  # (worker, shares, forgotten tenants)
        self._fresh: dict[str, dict[int, int]] = {}        # since the last rebalance
        self._demand: dict[str, dict[int, float]] = {}     # smoothed
        self._held: dict[int, dict[str, float]] = {}       # what each worker was last told

    def on_demand(self, worker: int, counts: dict[str, int]) -> None:
        for tenant, n in counts.items():
            per = self._fresh.setdefault(tenant, {})
            per[worker] = per.get(worker, 0) + n

    def rebalance(self, workers: list[int]) -> None:
        if not workers:
            return
        fresh, self._fresh = self._fresh, {}
        changes: dict[int, dict[str, float]] = {w: {} for w in workers}
        forgotten: list[str] = []
        for tenant in set(self._demand) | set(fresh):
            old, new = self._demand.get(tenant, {}), fresh.get(tenant, {})
            smoothed = {w: SMOOTHING * new.get(w, 0) + (1 - SMOOTHING) * old.get(w, 0.0) for w in workers}
            if sum(smoothed.values()) < FORGET_BELOW:
                self._demand.pop(tenant, None)
                forgotten.append(tenant)
                continue
            self._demand[tenant] = smoothed
            for w, share in shares_for(smoothed, workers).items():
                if abs(self._held.get(w, {}).get(tenant, -1.0) - share) >= RESEND_DELTA:
                    changes[w][tenant] = share
        for w in workers:
            held = self._held.setdefault(w, {})
            held.update(changes[w])
            gone = [t for t in forgotten if held.pop(t, None) is not None]
            if changes[w] or gone:
                self._send(w, changes[w], gone)
        for w in set(self._held) - set(workers):
            del self._held[w]
