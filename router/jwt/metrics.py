"""Prometheus metrics of JWT verification keys and the verified-token cache.

The cache counters are read from the cache's plain ints at scrape time, so a cache hit on
the request path costs an integer increment, not a metrics call.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from router.core.jwt_cache import TokenCache


class JwtMetrics:
    def __init__(self, registry: CollectorRegistry, cache: Callable[[], tuple[TokenCache | None, int, int]]) -> None:
        labels = ["source"]
        self.refreshes = Counter("stamp_router_jwks_refresh", "Key loads and refreshes by result (ok, not_modified, error).",
                                 labels + ["result"], registry=registry)
        self.keys = Gauge("stamp_router_jwks_keys", "Verification keys held.", labels, registry=registry)
        self.last_success = Gauge("stamp_router_jwks_last_success_timestamp_seconds",
                                  "Unix time of the last successful key load or refresh.", labels, registry=registry)
        self.unknown_kid = Counter("stamp_router_jwks_unknown_kid", "Tokens refused for an unknown kid.",
                                   labels, registry=registry)
        self.refetches = Counter("stamp_router_jwks_unknown_kid_refetches",
                                 "Key refetches triggered by an unknown kid (at most one per jwt.unknown_kid_refetch).",
                                 labels, registry=registry)
        registry.register(_CacheCollector(cache))

    def forget(self, source: str) -> None:
        """Drop the series of a key source no config uses any more."""
        for metric in (self.keys, self.last_success, self.unknown_kid, self.refetches):
            try:
                metric.remove(source)
            except KeyError:
                pass
        for result in ("ok", "not_modified", "error"):
            try:
                self.refreshes.remove(source, result)
            except KeyError:
                pass


class _CacheCollector(Collector):
    def __init__(self, cache: Callable[[], tuple[TokenCache | None, int, int]]) -> None:
        self._cache = cache

    def collect(self) -> Iterable:
        cache, base_hits, base_misses = self._cache()
        hits = base_hits + (cache.hits if cache else 0)
        misses = base_misses + (cache.misses if cache else 0)
        yield CounterMetricFamily("stamp_router_jwt_cache_hits", "Bearer tokens answered from the verified-token cache.", value=hits)
        yield CounterMetricFamily("stamp_router_jwt_cache_misses", "Bearer tokens verified in full (not in the cache, expired there, or their key left).",
                                  value=misses)
        yield GaugeMetricFamily("stamp_router_jwt_cache_entries", "Verified tokens held in the cache.", value=len(cache) if cache else 0)
