"""Metrics of config reloads and the control-plane feed (low rate: prometheus_client directly).

The version, digest, source and age of the config being served are exported by
router.metrics from Router.config_info().
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControlMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "stamp_router_config_reloads", "Config candidates by source (file, url, admin, pin, lkg) and "
            "result: success (served), rejected (invalid, or refused by the drop guard).",
            ["source", "result"], registry=registry)
        self.last_success = Gauge(
            "stamp_router_config_last_reload_success", "1 if the last candidate was accepted, 0 if rejected.",
            registry=registry)
        self.lkg_in_use = Gauge(
            "stamp_router_config_lkg_in_use", "1 while the router serves the last known good config because "
            "its configured source could not be had or was invalid at start.", registry=registry)
        self.reload_seconds = Gauge(
            "stamp_router_config_last_reload_duration_seconds", "Time from receiving the last accepted "
            "candidate to serving it (parse, validate, plan, build, swap).", registry=registry)
        self.lkg_write_errors = Counter(
            "stamp_router_config_lkg_write_errors", "Failures to persist an accepted config under control.state_dir.",
            registry=registry)
        self.lkg_superseded = Counter(
            "stamp_router_config_lkg_writes_superseded", "Last-known-good writes skipped because a newer "
            "config was queued to be written right behind them (a stream of file or control-plane changes).",
            registry=registry)
        self.polls = Counter(
            "stamp_router_control_polls", "Control-plane polls by result: changed, not_modified, unchanged, error.",
            ["result"], registry=registry)
        self.last_success.set(1)

    def reload(self, source: str, ok: bool) -> None:
        self.reloads.labels(source, "success" if ok else "rejected").inc()
        self.last_success.set(1 if ok else 0)
