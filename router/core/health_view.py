"""What the core asks of backend health. The health shell (router.health) implements it."""

from __future__ import annotations

from typing import Protocol

from router.core.snapshot import StampView


class HealthView(Protocol):
    def healthy_backends(self, stamp: StampView) -> tuple[str, ...]:
        """The backends of `stamp` that may take traffic now (empty: the stamp is down)."""


class AllHealthy:
    """Every backend counts as healthy: offline tools (`route`) and tests."""

    __slots__ = ()

    def healthy_backends(self, stamp: StampView) -> tuple[str, ...]:
        return stamp.backends


ALL_HEALTHY = AllHealthy()
