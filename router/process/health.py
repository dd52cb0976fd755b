# cython: annotation_typing=False
"""Backend health as a worker sees it: what the supervisor last said, plus what the
worker saw of live traffic, reported back.

The supervisor probes backends and decides on passive ejection once for the host
(router.health.HealthRegistry); a worker only routes by its answer (HEALTH messages, sent
on every transition) and reports the outcomes of its upstream attempts. Successes are
reported only for a backend that failed since its last reported success: the supervisor
needs them to reset a failure streak, and nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

from router.core.snapshot import Snapshot
from router.health.registry import RoutingView

# Outcomes kept between two reports at most; past it the oldest are dropped (a report
# that long means the worker is overloaded, and the newest outcomes matter most).
MAX_OUTCOMES = 10_000


class WorkerHealth(RoutingView):
    def __init__(self, routable: dict[str, tuple[str, ...]], panic: dict[str, tuple[str, ...]],
                 on_failure: Callable[[], None] = lambda: None) -> None:
        super().__init__(dict(routable), dict(panic))
        # A failure is sent at once, not with the next report: the supervisor's ejection
        # decision should not wait for a tick while requests keep going to the backend.
        self._on_failure = on_failure
        self._failing: set[str] = set()
        self._outcomes: list[tuple[str, bool, str]] = []

    # -- the proxy's reports of live traffic ------------------------------------------
    def report(self, backend: str, ok: bool, kind: str = "") -> None:
        # Once per request: with no stamp in panic (the usual case) no call to count it.
        if self._panic_by_backend:
            self._count_panic(backend)
        if ok:
            if backend not in self._failing:
                return
            self._failing.discard(backend)
        else:
            self._failing.add(backend)
        self._outcomes.append((backend, ok, kind))
        if len(self._outcomes) > MAX_OUTCOMES:
            del self._outcomes[: MAX_OUTCOMES // 2]
        if not ok:
            self._on_failure()

    def take_report(self) -> Any:
        if not self._outcomes:
            return None
        out, self._outcomes = self._outcomes, []
        return out

    # -- from the supervisor --------------------------------------------------------
    def update(self, routable: dict[str, list[str]], panic: dict[str, list[str]]) -> None:
        self._routable = {name: tuple(backends) for name, backends in routable.items()}
        self._panic_by_backend = {backend: tuple(names) for backend, names in panic.items()}

    def sync(self, snapshot: Snapshot) -> None:
        """A new snapshot: stamps the supervisor has not spoken of yet route to every backend."""
