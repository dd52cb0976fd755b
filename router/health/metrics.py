"""Prometheus metrics of backend health.

Health state lives in the registry; this collector reads it at scrape time, so a backend
removed by a reload simply stops being reported and nothing has to unregister labels.
Probe durations are a prometheus_client histogram (one observation per probe, a low rate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from router.health.probes import ProbeResult
    from router.health.registry import HealthRegistry

# Seconds: a loopback probe takes about a millisecond; past a second it is a timeout anyway.
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HealthMetrics(Collector):
    def __init__(self, source: HealthRegistry, registry: CollectorRegistry) -> None:
        self.source = source
        self.probe_duration = Histogram("stamp_router_probe_duration_seconds", "Time an active health probe took.",
                                        ["backend"], buckets=PROBE_BUCKETS, registry=registry)
        self.probes = Counter("stamp_router_probes", "Active health probes by result (ok or fail).",
                              ["backend", "result"], registry=registry)
        registry.register(self)

    def observe_probe(self, backend: str, result: ProbeResult) -> None:
        self.probe_duration.labels(backend).observe(result.duration)
        self.probes.labels(backend, "ok" if result.ok else "fail").inc()

    def forget(self, backend: str) -> None:
        self.probe_duration.remove(backend)
        self.probes.remove(backend, "ok")
        self.probes.remove(backend, "fail")

    def collect(self) -> Iterator:
        src = self.source
        healthy = GaugeMetricFamily("stamp_router_backend_healthy",
                                    "1 when the backend takes traffic (not probe-down, not ejected).",
                                    labels=["stamp", "backend"])
        ejected = GaugeMetricFamily("stamp_router_backend_ejected", "1 while the backend is passively ejected.",
                                    labels=["stamp", "backend"])
        ejections = CounterMetricFamily("stamp_router_backend_ejections",
                                        "Passive ejections (outlier detection) of the backend.",
                                        labels=["stamp", "backend"])
        changes = CounterMetricFamily("stamp_router_backend_health_changes",
                                      "Times the backend went in or out of rotation; a fast rise means flapping.",
                                      labels=["stamp", "backend"])
        n_healthy = GaugeMetricFamily("stamp_router_stamp_healthy_backends", "Backends of the stamp taking traffic.",
                                      labels=["stamp"])
        panic = GaugeMetricFamily("stamp_router_stamp_panic", "1 while the stamp routes to all its backends (panic).",
                                  labels=["stamp"])
        panic_routed = CounterMetricFamily("stamp_router_panic_routed",
                                           "Upstream attempts to the stamp's backends while it was in panic.",
                                           labels=["stamp"])
        for stamp in list(src.stamps.values()):
            up = 0
            for b in stamp.backends:
                h = src.states.get(b)
                if h is None:
                    continue
                up += h.routable
                labels = [stamp.name, b]
                healthy.add_metric(labels, 1.0 if h.routable else 0.0)
                ejected.add_metric(labels, 1.0 if h.ejected_until is not None else 0.0)
                ejections.add_metric(labels, src.ejections_total.get((stamp.name, b), 0))
                changes.add_metric(labels, src.changes_total.get((stamp.name, b), 0))
            n_healthy.add_metric([stamp.name], up)
            panic.add_metric([stamp.name], 1.0 if stamp.name in src.panic else 0.0)
            panic_routed.add_metric([stamp.name], src.panic_routed.get(stamp.name, 0))
        yield from (healthy, ejected, ejections, changes, n_healthy, panic, panic_routed)
