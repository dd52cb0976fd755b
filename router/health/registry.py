# cython: annotation_typing=False
"""The health registry: the one HealthView the proxy hands to decide().

It owns a `BackendHealth` (router.core.health_fsm) per backend address and feeds it
probe results (router.health.probes), live-traffic outcomes (`report`, from the proxy)
and ejection timers. healthy_backends() is on the hot path: it returns a tuple
precomputed per stamp, rebuilt only when some backend's routability changes.

Panic-routed requests are counted in `report()`, which the proxy calls once per upstream
attempt anyway: the count costs one truthiness test while no stamp is in panic, and is
an approximation (it counts attempts, so a retried request counts twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from prometheus_client import CollectorRegistry

from router.core.health_fsm import (BackendHealth, OutlierLimits, ProbeLimits, end_ejection, ejection_allowed,
                                    forget_probes, on_probe, on_traffic, route)
from router.core.health_view import HealthView
from router.core.snapshot import Snapshot, StampView
from router.health.metrics import HealthMetrics
from router.health.probes import Prober, ProbeResult, ProbeSpec

log = logging.getLogger("router.health")

# /readyz waits for every backend's first probe, but no longer than the longest probe
# timeout plus this: a probe that cannot even time out must not keep a router unready.
FIRST_ROUND_GRACE = 2.0


class RoutingView(HealthView):
    """What the data path routes by (the core's HealthView: stamp -> routable backends) and
    the count of requests routed to stamps in panic; the registry computes it, a worker
    holds a copy (router.process.health)."""

    def __init__(self, routable: dict[str, tuple[str, ...]], panic_by_backend: dict[str, tuple[str, ...]]) -> None:
        super().__init__(routable)
        self._panic_by_backend = panic_by_backend
        self.panic_routed: dict[str, int] = {}

    def _count_panic(self, backend: str) -> None:
        if self._panic_by_backend:
            for name in self._panic_by_backend.get(backend, ()):
                self.panic_routed[name] = self.panic_routed.get(name, 0) + 1


class HealthRegistry(RoutingView):
    def __init__(self, registry: CollectorRegistry, tls_for=None) -> None:
        super().__init__({}, {})
        # snapshot -> {backend: router.tls.upstream.UpstreamTls}: probes speak TLS as requests do
        self._tls_for = tls_for or (lambda snap: {})
        self.stamps: dict[str, StampView] = {}
        self.states: dict[str, BackendHealth] = {}
        self.panic: set[str] = set()
        self.ejections_total: dict[tuple[str, str], int] = {}
        self.changes_total: dict[tuple[str, str], int] = {}
        self._owners: dict[str, tuple[str, ...]] = {}
        self._probe_limits: dict[str, ProbeLimits] = {}
        self._targets: dict[str, ProbeSpec] = {}
        self._outlier = OutlierLimits()
        self._last_probe: dict[str, ProbeResult] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._awaiting_first: set[str] = set()
        self._prober = Prober(self._on_probe)
        self._started = False
        self.first_round_done = False
        # Called after every change of what is routable (router.process tells the workers).
        self.on_change: Callable[[], None] | None = None
        self.metrics = HealthMetrics(self, registry)

    # -- fed by the proxy (passive signals) ----------------------------------------
    def report(self, backend: str, ok: bool, kind: str = "") -> None:
        """An outcome of live traffic: ok, or a connect failure / timeout / reset / 5xx."""
        self._count_panic(backend)
        self.outcome(backend, ok, kind)

    def outcome(self, backend: str, ok: bool, kind: str = "") -> None:
        """An outcome of live traffic, already counted where it happened (a worker's report)."""
        h = self.states.get(backend)
        if h is None or (ok and h.passive_failures == 0):
            return
        now = time.monotonic()
        if on_traffic(h, ok, kind, self._outlier, now, lambda: self._room(backend)):
            self._ejected(backend, h, now, kind)

    def _room(self, backend: str) -> bool:
        fraction = self._outlier.max_ejected_fraction
        for name in self._owners.get(backend, ()):
            backends = self.stamps[name].backends
            ejected = sum(1 for b in backends if self.states[b].ejected_until is not None)
            if not ejection_allowed(ejected, len(backends), fraction):
                return False
        return True

    def _ejected(self, backend: str, h: BackendHealth, now: float, kind: str) -> None:
        for name in self._owners.get(backend, ()):
            key = (name, backend)
            self.ejections_total[key] = self.ejections_total.get(key, 0) + 1
        log.warning("backend %s ejected for %.1fs after %s failures in a row (last: %s); ejection #%d",
                    backend, h.ejected_until - now, self._outlier.consecutive_failures, kind, h.ejections)
        self._arm_timer(backend, h.ejected_until - now)
        self._changed(backend)

    def _arm_timer(self, backend: str, delay: float) -> None:
        old = self._timers.pop(backend, None)
        if old is not None:
            old.cancel()
        self._timers[backend] = asyncio.get_running_loop().call_later(max(0.0, delay), self._ejection_over, backend)

    def _ejection_over(self, backend: str) -> None:
        self._timers.pop(backend, None)
        h = self.states.get(backend)
        if h is None or h.ejected_until is None:
            return
        now = time.monotonic()
        if now < h.ejected_until:
            # The loop's clock and time.monotonic() may disagree by a tick: wait the rest.
            self._arm_timer(backend, h.ejected_until - now + 0.001)
            return
        if end_ejection(h, now):
            log.info("backend %s back in rotation after its ejection", backend)
            self._changed(backend)

    # -- fed by the probes ---------------------------------------------------------
    def _on_probe(self, backend: str, result: ProbeResult) -> None:
        h = self.states.get(backend)
        if h is None:
            return
        self._last_probe[backend] = result
        self.metrics.observe_probe(backend, result)
        if on_probe(h, result.ok, self._probe_limits.get(backend) or ProbeLimits(), time.monotonic()):
            log.log(logging.INFO if h.routable else logging.WARNING, "backend %s is %s (probe %s%s)", backend,
                    "healthy" if h.routable else "unhealthy", "ok" if result.ok else "failed",
                    f": {result.error}" if result.error else "")
            self._changed(backend)
        if self._awaiting_first:
            self._awaiting_first.discard(backend)
            if not self._awaiting_first:
                self.first_round_done = True

    def _first_round_over(self) -> None:
        if not self.first_round_done:
            log.warning("first health round incomplete after its deadline; no result yet for %s",
                        ", ".join(sorted(self._awaiting_first)))
            self._awaiting_first.clear()
            self.first_round_done = True

    # -- recomputing ---------------------------------------------------------------
    def _changed(self, backend: str) -> None:
        owners = self._owners.get(backend, ())
        for name in owners:
            key = (name, backend)
            self.changes_total[key] = self.changes_total.get(key, 0) + 1
        self._recompute(owners)
        if self.on_change is not None:
            self.on_change()

    def routing_view(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        """What a worker routes by: stamp -> routable backends, backend -> stamps in panic."""
        return dict(self._routable), dict(self._panic_by_backend)

    def _recompute(self, names) -> None:
        panic_before = set(self.panic)
        for name in names:
            stamp = self.stamps[name]
            self._routable[name], in_panic = route(stamp.backends, self.states, stamp.panic_threshold)
            if in_panic:
                self.panic.add(name)
            else:
                self.panic.discard(name)
        if self.panic != panic_before:
            for name in self.panic - panic_before:
                log.warning("stamp %s in panic: too few healthy backends, routing to all of them", name)
            for name in panic_before - self.panic:
                log.info("stamp %s out of panic", name)
            self._index_panic()

    def _index_panic(self) -> None:
        """backend -> the stamps in panic that list it, for report() to count."""
        by_backend: dict[str, tuple[str, ...]] = {}
        for name in self.panic:
            for b in self.stamps[name].backends:
                by_backend[b] = by_backend.get(b, ()) + (name,)
        self._panic_by_backend = by_backend

    # -- lifecycle -------------------------------------------------------------------
    def sync(self, snap: Snapshot) -> None:
        """Adopt a new snapshot: keep state for backends that stay, start probing new ones,
        stop probing removed ones. A backend shared by stamps is probed as its first stamp says."""
        cfg = snap.config
        o = cfg.outlier
        self._outlier = OutlierLimits(o.consecutive_failures, o.consecutive_5xx, o.base_ejection,
                                      o.max_ejection, o.max_ejected_fraction)
        owners: dict[str, tuple[str, ...]] = {}
        targets: dict[str, ProbeSpec] = {}
        limits: dict[str, ProbeLimits] = {}
        tls = self._tls_for(snap)
        for s in cfg.stamps:
            for b in s.backends:
                if s.name not in owners.get(b, ()):
                    owners[b] = owners.get(b, ()) + (s.name,)
                if s.health.enabled and b not in targets:
                    targets[b] = ProbeSpec(s.health.path, s.health.interval, s.health.timeout, tls.get(b))
                    limits[b] = ProbeLimits(s.health.rise, s.health.fall)
        for b in set(self.states) - set(owners):
            timer = self._timers.pop(b, None)
            if timer is not None:
                timer.cancel()
            self._last_probe.pop(b, None)
            self.metrics.forget(b)
        states = {b: self.states.get(b) or BackendHealth() for b in owners}
        for b, h in states.items():
            if b not in targets:
                forget_probes(h)
                self._last_probe.pop(b, None)
        self.states, self._owners, self._targets, self._probe_limits = states, owners, targets, limits
        self.stamps = dict(snap.stamps)
        pairs = {(name, b) for b, names in owners.items() for name in names}
        for counts in (self.ejections_total, self.changes_total):
            for key in set(counts) - pairs:
                del counts[key]
        self.panic_routed = {n: c for n, c in self.panic_routed.items() if n in self.stamps}
        self.panic &= set(self.stamps)
        self._routable = {}
        self._recompute(self.stamps)
        self._index_panic()             # a stamp still in panic may list other backends now
        if self._started:
            self._prober.set_targets(targets)
        if self.on_change is not None:
            self.on_change()

    async def start(self) -> None:
        self._started = True
        self._prober.start()
        self._awaiting_first = set(self._targets)
        if self._awaiting_first:
            grace = max(spec.timeout for spec in self._targets.values()) + FIRST_ROUND_GRACE
            asyncio.get_running_loop().call_later(grace, self._first_round_over)
        else:
            self.first_round_done = True
        self._prober.set_targets(self._targets)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._prober.close()

    # -- GET /stamps -------------------------------------------------------------------
    def stamp_status(self, snap: Snapshot) -> list[dict]:
        wall_offset = time.time() - time.monotonic()
        out = []
        for stamp in snap.stamps.values():
            backends = []
            for b in stamp.backends:
                h = self.states.get(b) or BackendHealth()
                probe = self._last_probe.get(b)
                backends.append({
                    "address": b, "healthy": h.routable, "probe": h.probe.value,
                    "ejected_until": None if h.ejected_until is None else round(h.ejected_until + wall_offset, 3),
                    "ejections": h.ejections,
                    "consecutive_failures": h.probe_failures, "passive_failures": h.passive_failures,
                    "last_probe": None if probe is None else {
                        "ok": probe.ok, "status": probe.status, "at": round(probe.at, 3), "error": probe.error,
                        "duration": round(probe.duration, 6)},
                })
            n_healthy = sum(1 for b in backends if b["healthy"])
            out.append({
                "name": stamp.name, "region": stamp.region, "residency": stamp.residency,
                "state": stamp.state, "weight": stamp.weight, "public": list(stamp.public),
                "failover": list(stamp.failover),
                "healthy": stamp.state != "offline" and n_healthy > 0, "panic": stamp.name in self.panic,
                "healthy_backends": n_healthy, "backends": backends,
            })
        return out
