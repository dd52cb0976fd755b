"""The hold queue: requests of a paused tenant, parked until the pause ends.

The core decides a hold (`Decision.held`: the tenant's pin is paused); this queue carries
it out. A held exchange keeps its client connection and whatever body arrives (reading
pauses past the exchange's pending limit, as while an upstream connection opens), and
waits in its tenant's queue, in arrival order. When a new snapshot no longer has the
tenant paused, its queue is released: each exchange is started again, in that order,
and decided on the snapshot current then, so it goes to the stamp the pin names now.
A connection has at most one exchange started at a time (pipelined requests wait
behind it), so each connection's requests keep their order.

Bounds, so that a pause can never take the worker down:
- `hold_timeout`: an exchange held longer is answered 503 `tenant_paused` with
  Retry-After;
- `hold_max_requests`, shared among the router's workers: past its share, a new request
  is answered the same at once;
- MAX_HELD in all, whatever the config says;
- a held exchange whose client goes away is dropped from its queue (`drop`);
- a worker that drains answers what it holds at once (`refuse_all`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from router.core.decision import PAUSED
from router.errors import ErrorKind

if TYPE_CHECKING:
    import asyncio

    from router.core.snapshot import Snapshot
    from router.metrics import ProxyMetrics
    from router.proxy.exchange import Exchange

# Held exchanges of every tenant together, per worker: each is an open client connection
# and a few KiB, so this bounds the worker's memory however the config is set.
MAX_HELD = 100_000
# How often held exchanges are checked against hold_timeout while any is held: a timeout
# fires within this much of its value.
TICK = 0.05


class HoldQueues:
    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: ProxyMetrics, workers: int,
                 clock: Callable[[], float]) -> None:
        self.loop = loop
        self.metrics = metrics
        self.workers = workers
        self.clock = clock
        # tenant -> {exchange: (held since, deadline)}: a dict keeps arrival order and
        # drops a departed client's exchange in O(1).
        self.queues: dict[str, dict[Exchange, tuple[float, float]]] = {}
        self.held = 0
        self._timer: asyncio.TimerHandle | None = None

    def of(self, tenant: str) -> int:
        queue = self.queues.get(tenant)
        return len(queue) if queue else 0

    # -- the proxy's side --------------------------------------------------------------
    def hold(self, ex: Exchange) -> None:
        """Park `ex` (its decision is a hold), or refuse it at once when its tenant's
        share of hold_max_requests, or MAX_HELD, is reached."""
        migration = ex.snap.config.migration
        tenant = ex.decision.tenant
        queue = self.queues.get(tenant)
        if queue is None:
            queue = self.queues[tenant] = {}
        share = max(1, math.ceil(migration.hold_max_requests / self.workers))
        if len(queue) >= share or self.held >= MAX_HELD:
            if not queue:
                del self.queues[tenant]
            self.metrics.hold_refused["full"] = self.metrics.hold_refused.get("full", 0) + 1
            self._refuse(ex, f"tenant {tenant!r} is paused (being moved) and {len(queue)} of its requests are "
                             "held already here; try again shortly")
            return
        now = self.clock()
        queue[ex] = (now, now + migration.hold_timeout)
        self.held += 1
        self.metrics.held = self.held
        if self._timer is None:
            self._timer = self.loop.call_later(TICK, self._expire)

    def drop(self, ex: Exchange) -> None:
        """The client went away (or the request ended otherwise) while held."""
        d = ex.decision
        queue = self.queues.get(d.tenant) if d is not None else None
        if queue is not None and queue.pop(ex, None) is not None:
            self._count_out(d.tenant, queue)
            self.metrics.hold_dropped += 1

    # -- the pause ending ----------------------------------------------------------------
    def on_swap(self, snap: Snapshot) -> None:
        """A new snapshot: release the queue of every tenant no longer paused in it."""
        if not self.queues:
            return
        modes = snap.modes
        for tenant in [t for t in self.queues if modes.get(t) != PAUSED]:
            self.release(tenant)

    def release(self, tenant: str) -> None:
        queue = self.queues.pop(tenant, None)
        if not queue:
            return
        self.held -= len(queue)
        self.metrics.held = self.held
        now = self.clock()
        observe = self.metrics.observe_hold
        for ex, (since, _) in queue.items():
            observe(now - since)
            if not ex.finished:
                ex.start()           # decided again, on the snapshot current now

    def refuse_all(self) -> None:
        """The worker is draining: every held request is answered 503 with Retry-After
        now (its client retries, through another worker or router), not cut off later."""
        now = self.clock()
        for tenant, queue in list(self.queues.items()):
            del self.queues[tenant]
            for ex, (since, _) in queue.items():
                self.held -= 1
                self.metrics.observe_hold(now - since)
                self.metrics.hold_refused["shutdown"] = self.metrics.hold_refused.get("shutdown", 0) + 1
                if not ex.finished:
                    self._refuse(ex, f"tenant {tenant!r} is paused (being moved) and this router is shutting down; "
                                     "try again shortly")
        self.metrics.held = self.held

    def _expire(self) -> None:
        self._timer = None
        now = self.clock()
        for tenant in list(self.queues):
            queue = self.queues.get(tenant)
            while queue:
                ex, (since, deadline) = next(iter(queue.items()))
                if deadline > now:
                    break
                del queue[ex]
                self._count_out(tenant, queue)
                self.metrics.observe_hold(now - since)
                self.metrics.hold_refused["timeout"] = self.metrics.hold_refused.get("timeout", 0) + 1
                self._refuse(ex, f"tenant {tenant!r} is paused (being moved) and its request was held for "
                                 "migration.hold_timeout; try again shortly")
        if self.held and self._timer is None:
            self._timer = self.loop.call_later(TICK, self._expire)

    def _count_out(self, tenant: str, queue: dict) -> None:
        self.held -= 1
        self.metrics.held = self.held
        if not queue:
            self.queues.pop(tenant, None)

    @staticmethod
    def _refuse(ex: Exchange, message: str) -> None:
        ex.refuse(ErrorKind.TENANT_PAUSED, message, ((b"Retry-After", b"%d" % ex.decision.retry_after),))
