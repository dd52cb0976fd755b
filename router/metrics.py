# cython: annotation_typing=False
"""Prometheus metrics of the data path, kept as plain counters and exported at scrape time.

prometheus_client's labelled metrics take a lock and a dict lookup per update; on a path
that should cost ~20 µs a request that is too much, so the proxy bumps plain integers in
per-stamp slot objects and this collector turns them into metric families when scraped.
Low-rate events (reloads, probes, JWKS refreshes) use prometheus_client metrics directly
on the same registry.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily)
from prometheus_client.registry import Collector

from router import __version__
from router.build import current

# Seconds; spans a fast keep-alive hop to a slow upstream.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NBUCKETS = len(BUCKETS)
NO_STAMP = "none"   # label for requests refused before a stamp was chosen
# Seconds a request of a paused tenant was held: a move's pause as its clients see it.
HOLD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StampStats:
    """Counters for one stamp label value."""

    __slots__ = ("codes", "buckets", "duration_sum", "retries")

    def __init__(self) -> None:
        self.codes = [0] * 6          # index = status // 100
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.retries = 0

    def observe(self, status: int, seconds: float) -> None:
        self.codes[status // 100 if status < 600 else 5] += 1
        # Most requests fall in the first buckets: a scan from the start beats a bisect
        # (a call) there, and costs at most len(BUCKETS) comparisons past them.
        # The bound is read into a C double (metrics.pxd): a comparison with the tuple's
        # float as an object would box `seconds` once per bucket passed.
        i = 0
        while i < _NBUCKETS:
            bound = BUCKETS[i]
            if seconds <= bound:
                break
            i += 1
        self.buckets[i] += 1
        self.duration_sum += seconds


class RequestCounters:
    """What every request counts: the per-stamp stats and the requests in flight.

    ProxyMetrics is this plus the counters of rarer events and the export. The split is
    for the compiled build: ProxyMetrics is a prometheus_client Collector, a Python class
    whose every method is a Python call, while this is typed (metrics.pxd), so the
    connection and the exchange (through router.proxy.context) count a request as C.
    """

    __slots__ = ("stamps", "in_flight")

    def __init__(self) -> None:
        self.stamps: dict[str, StampStats] = {}
        self.in_flight = 0

    def stamp(self, name: str | None) -> StampStats:
        key = name or NO_STAMP
        stats = self.stamps.get(key)
        if stats is None:
            stats = self.stamps[key] = StampStats()
        return stats

    def request_began(self) -> None:
        self.in_flight += 1

    def request_ended(self) -> None:
        self.in_flight -= 1


class ProxyMetrics(RequestCounters, Collector):
    def __init__(self, registry: CollectorRegistry | None, config_info: Callable[[], dict]) -> None:
        super().__init__()
        self.upstream_errors: dict[tuple[str, str, str], int] = {}
        self.failovers: dict[tuple[str, str], int] = {}
        self.rate_limits: dict[str, int] = {}
        self.open_connections = 0
        self.connections_refused = 0
        self.proxy_protocol_errors = 0
        self.misdirected = 0                      # 421: Host not the connection's SNI
        self.redirects = 0                        # listen.redirect_http answers
        self.tls_failures: dict[str, int] = {}    # failed handshakes by reason
        self.sni_fallbacks: dict[str, int] = {}   # handshakes served the first certificate: "none", "unknown"
        self.panic_routed: dict[str, int] = {}
        self.overload_shed = 0                    # requests answered 503: over limits.max_memory
        self.overload_entered = 0                 # times a worker went over limits.max_memory
        self.overload_shedding = 0                # 1 while this worker sheds (summed: workers shedding)
        self.resident_memory = 0                  # bytes, this worker's (the memory guard reads it)
        # Paused tenants (router.proxy.hold): held now, answered 503 by a hold (reason:
        # full, timeout), dropped because the client went away, and how long each was held.
        self.held = 0
        self.hold_refused: dict[str, int] = {}
        self.hold_dropped = 0
        self.hold_buckets = [0] * (len(HOLD_BUCKETS) + 1)
        self.hold_sum = 0.0
        self._config_info = config_info
        if registry is not None:
            registry.register(self)

    def retried(self, stamp: str) -> None:
        self.stamp(stamp).retries += 1

    def upstream_error(self, stamp: str, backend: str, kind: str) -> None:
        key = (stamp, backend, kind)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def failover(self, from_stamp: str, to_stamp: str) -> None:
        key = (from_stamp, to_stamp)
        self.failovers[key] = self.failovers.get(key, 0) + 1

    def observe_hold(self, seconds: float) -> None:
        self.hold_buckets[bisect_left(HOLD_BUCKETS, seconds)] += 1
        self.hold_sum += seconds

    def rate_limited(self, stamp: str) -> None:
        self.rate_limits[stamp] = self.rate_limits.get(stamp, 0) + 1

    # -- across processes: a worker exports, the supervisor sums -----------------------
    def export(self, health=None) -> dict:
        """The counters as plain data, for the supervisor to sum (router.process)."""
        return {
            "stamps": {name: [st.codes, st.buckets, st.duration_sum, st.retries] for name, st in self.stamps.items()},
            "upstream_errors": [[*key, n] for key, n in self.upstream_errors.items()],
            "failovers": [[*key, n] for key, n in self.failovers.items()],
            "rate_limits": self.rate_limits,
            "panic_routed": dict(health.panic_routed) if health is not None else {},
            "open_connections": self.open_connections, "in_flight": self.in_flight,
            "connections_refused": self.connections_refused, "proxy_protocol_errors": self.proxy_protocol_errors,
            "misdirected": self.misdirected, "redirects": self.redirects, "tls_failures": self.tls_failures,
            "sni_fallbacks": self.sni_fallbacks, "overload_shed": self.overload_shed,
            "overload_entered": self.overload_entered, "overload_shedding": self.overload_shedding,
            "resident_memory": self.resident_memory,
            "held": self.held, "hold_refused": self.hold_refused, "hold_dropped": self.hold_dropped,
            "hold_buckets": self.hold_buckets, "hold_sum": self.hold_sum,
        }

    def add(self, data: dict, gauges: bool = True) -> None:
        """Add an export's counters to these (and its gauges, for a worker still running)."""
        for name, (codes, buckets, duration_sum, retries) in data["stamps"].items():
            st = self.stamp(name)
            st.codes = [a + b for a, b in zip(st.codes, codes)]
            st.buckets = [a + b for a, b in zip(st.buckets, buckets)]
            st.duration_sum += duration_sum
            st.retries += retries
        for *key, n in data["upstream_errors"]:
            self.upstream_errors[tuple(key)] = self.upstream_errors.get(tuple(key), 0) + n
        for *key, n in data["failovers"]:
            self.failovers[tuple(key)] = self.failovers.get(tuple(key), 0) + n
        self.hold_buckets = [a + b for a, b in zip(self.hold_buckets, data["hold_buckets"])]
        self.hold_sum += data["hold_sum"]
        self.hold_dropped += data["hold_dropped"]
        for table in ("rate_limits", "panic_routed", "tls_failures", "sni_fallbacks", "hold_refused"):
            mine = getattr(self, table)
            for key, n in data[table].items():
                mine[key] = mine.get(key, 0) + n
        self.connections_refused += data["connections_refused"]
        self.proxy_protocol_errors += data["proxy_protocol_errors"]
        self.misdirected += data["misdirected"]
        self.redirects += data["redirects"]
        self.overload_shed += data["overload_shed"]
        self.overload_entered += data["overload_entered"]
        if gauges:
            self.open_connections += data["open_connections"]
            self.in_flight += data["in_flight"]
            self.overload_shedding += data["overload_shedding"]
            self.held += data["held"]

    def tls_handshake_failed(self, reason: str) -> None:
        self.tls_failures[reason] = self.tls_failures.get(reason, 0) + 1

    def collect(self) -> Iterator:
        req = CounterMetricFamily("stamp_router_requests", "Requests answered, by stamp and status class.",
                                  labels=["stamp", "code"])
        dur = HistogramMetricFamily("stamp_router_request_duration_seconds",
                                    "Time from the request head to the last response byte.", labels=["stamp"])
        retries = CounterMetricFamily("stamp_router_retries", "Retries: attempts of a request on another backend "
                                      "after the first failed.", labels=["stamp"])
        for name, st in list(self.stamps.items()):
            for cls in range(1, 6):
                if st.codes[cls]:
                    req.add_metric([name, f"{cls}xx"], st.codes[cls])
            acc, buckets = 0, []
            for bound, n in zip(BUCKETS, st.buckets):
                acc += n
                buckets.append((repr(bound), acc))
            acc += st.buckets[-1]
            buckets.append(("+Inf", acc))
            dur.add_metric([name], buckets, st.duration_sum)
            retries.add_metric([name], st.retries)
        yield req
        yield dur
        yield retries
        errs = CounterMetricFamily("stamp_router_upstream_errors", "Upstream failures by stamp, backend and kind "
                                   "(connect, timeout, reset, protocol).", labels=["stamp", "backend", "kind"])
        for (stamp, backend, kind), n in list(self.upstream_errors.items()):
            errs.add_metric([stamp, backend, kind], n)
        yield errs
        fo = CounterMetricFamily("stamp_router_failovers", "Requests served by a failover stamp.",
                                 labels=["from_stamp", "to_stamp"])
        for (a, b), n in list(self.failovers.items()):
            fo.add_metric([a, b], n)
        yield fo
        rl = CounterMetricFamily("stamp_router_rate_limited", "Requests answered 429 because their tenant was "
                                 "over limits.tenant_rate, by the stamp they would have gone to.", labels=["stamp"])
        for stamp, n in list(self.rate_limits.items()):
            rl.add_metric([stamp], n)
        yield rl
        yield GaugeMetricFamily("stamp_router_client_connections", "Open client connections.", value=self.open_connections)
        yield GaugeMetricFamily("stamp_router_requests_in_flight", "Requests being proxied.", value=self.in_flight)
        yield CounterMetricFamily("stamp_router_connections_refused", "Client connections closed at accept: "
                                  "listen.max_connections reached, or the router draining.", value=self.connections_refused)
        yield CounterMetricFamily("stamp_router_proxy_protocol_errors", "Client connections closed because they did "
                                  "not start with a valid PROXY protocol header (listen.proxy_protocol).",
                                  value=self.proxy_protocol_errors)
        tls = CounterMetricFamily("stamp_router_tls_handshake_failures", "TLS handshakes on listen.https that "
                                  "failed, by reason (plaintext_http, protocol_version, no_shared_cipher, unknown_sni, "
                                  "client_certificate, timeout, closed, tls_error).", labels=["reason"])
        for reason, n in list(self.tls_failures.items()):
            tls.add_metric([reason], n)
        yield tls
        sni = CounterMetricFamily("stamp_router_tls_sni_fallbacks", "TLS connections served the first certificate "
                                  "because the client sent no SNI (sni=\"none\") or one no certificate covers "
                                  "(sni=\"unknown\").", labels=["sni"])
        for kind, n in list(self.sni_fallbacks.items()):
            sni.add_metric([kind], n)
        yield sni
        yield CounterMetricFamily("stamp_router_misdirected_requests", "Requests answered 421 because their Host "
                                  "was not the name of their TLS connection (SNI).", value=self.misdirected)
        yield CounterMetricFamily("stamp_router_http_redirects", "Requests on listen.http answered 308 to https "
                                  "(listen.redirect_http).", value=self.redirects)
        yield CounterMetricFamily("stamp_router_overload_shed_requests", "Requests answered 503 (overloaded) "
                                  "because their worker was over limits.max_memory.", value=self.overload_shed)
        yield CounterMetricFamily("stamp_router_overload_entered", "Times a worker went over limits.max_memory "
                                  "and stopped accepting connections.", value=self.overload_entered)
        yield GaugeMetricFamily("stamp_router_overload_shedding", "Workers over limits.max_memory now: not "
                                "accepting connections, answering new requests 503.", value=self.overload_shedding)
        yield GaugeMetricFamily("stamp_router_held_requests", "Requests of paused tenants (being moved) held "
                                "now, waiting for the pause to end.", value=self.held)
        yield _counter_by("stamp_router_hold_refused", "Requests of paused tenants answered 503 by the hold: "
                          "reason=\"full\" (migration.hold_max_requests reached), \"timeout\" (held for "
                          "migration.hold_timeout), \"shutdown\" (held when the worker drained).", "reason",
                          self.hold_refused)
        yield CounterMetricFamily("stamp_router_hold_dropped", "Held requests dropped because their client went "
                                  "away.", value=self.hold_dropped)
        acc, buckets = 0, []
        for bound, n in zip(HOLD_BUCKETS, self.hold_buckets):
            acc += n
            buckets.append((repr(bound), acc))
        buckets.append(("+Inf", acc + self.hold_buckets[-1]))
        hold = HistogramMetricFamily("stamp_router_hold_seconds", "How long each held request was held, until its "
                                     "release or its 503.")
        hold.add_metric([], buckets, self.hold_sum)
        yield hold
        info = self._config_info()
        if info:
            yield InfoMetricFamily("stamp_router_config", "The config being served.",
                                   value={"version": info["version"], "digest": info["digest"][:12],
                                          "source": info["source"]})
            yield GaugeMetricFamily("stamp_router_config_loaded_timestamp_seconds",
                                    "When the config being served was accepted.", value=info["loaded_at"])
            yield GaugeMetricFamily("stamp_router_config_age_seconds", "Seconds since the config being served was accepted.",
                                    value=max(0.0, time.time() - info["loaded_at"]))


def _counter_by(name: str, doc: str, label: str, table: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in list(table.items()):
        family.add_metric([key], n)
    return family


class SummedProxyMetrics(Collector):
    """The data path's metrics of the whole router: every worker's counters summed.

    `latest` holds each running worker's last export (refreshed before a scrape);
    `retired` the counters of workers gone, so that a total never goes backwards when a
    worker is replaced. Gauges (open connections, in flight) count running workers only.
    """

    def __init__(self, registry: CollectorRegistry, config_info: Callable[[], dict]) -> None:
        self.latest: dict[int, dict] = {}
        self.retired = ProxyMetrics(None, lambda: {})
        self._config_info = config_info
        registry.register(self)

    def update(self, worker: int, data: dict) -> None:
        self.latest[worker] = data

    def retire(self, worker: int) -> None:
        data = self.latest.pop(worker, None)
        if data is not None:
            self.retired.add(data, gauges=False)

    def total(self) -> ProxyMetrics:
        total = ProxyMetrics(None, self._config_info)
        total.add(self.retired.export(self.retired), gauges=False)
        for data in list(self.latest.values()):
            total.add(data)
        return total

    def workers_shedding(self) -> int:
        """Running workers over limits.max_memory, as they last reported."""
        return sum(data["overload_shedding"] for data in list(self.latest.values()))

    def collect(self) -> Iterator:
        yield from self.total().collect()
        rss = GaugeMetricFamily("stamp_router_worker_resident_memory_bytes", "Resident memory of each worker, "
                                "as its memory guard last read it (limits.max_memory).", labels=["worker"])
        # By slot: while a generation replaces another, two workers share one (the larger counts).
        by_slot: dict[int, int] = {}
        for data in list(self.latest.values()):
            slot = data.get("slot", 0)
            by_slot[slot] = max(by_slot.get(slot, 0), data["resident_memory"])
        for slot, resident in sorted(by_slot.items()):
            rss.add_metric([str(slot)], resident)
        yield rss


def register_build_info(registry: CollectorRegistry) -> None:
    """stamp_router_build_info: the release, and which build of the data path runs."""
    choice = current()
    Info("stamp_router_build", "The release, and which build of the data path runs: compiled or pure (Python).",
         registry=registry).info({"version": __version__, "build": choice.build.value, "reason": choice.reason.value,
                                  "cython": choice.cython or ""})
