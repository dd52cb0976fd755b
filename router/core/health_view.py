# cython: annotation_typing=False
"""What the core asks of backend health. The health shell (router.health) fills it."""

from __future__ import annotations

from router.core.snapshot import StampView


class HealthView:
    """The backends of each stamp that may take traffic now, as a table the health shell
    keeps (router.health.RoutingView and its subclasses): a stamp the table does not name
    routes to all its backends. A class rather than a protocol for the compiled build
    (health_view.pxd), where decide() asks it as C once per request."""

    __slots__ = ("_routable",)

    def __init__(self, routable: dict[str, tuple[str, ...]]) -> None:
        self._routable = routable

    def healthy_backends(self, stamp: StampView) -> tuple[str, ...]:
        """The backends of `stamp` that may take traffic now (empty: the stamp is down)."""
        return self._routable.get(stamp.name, stamp.backends)


class AllHealthy(HealthView):
    """Every backend counts as healthy: offline tools (`route`) and tests."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__({})


ALL_HEALTHY = AllHealthy()
