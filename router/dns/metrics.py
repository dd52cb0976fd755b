"""Prometheus metrics of the DNS updater, served on an admin port or written to a textfile.

Names start `stamp_dns_`; a pass result is one of RESULTS. The textfile is replaced whole,
so node_exporter never reads half of it.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from router.config.addresses import parse_hostport
from router.dns.files import write_atomic

RESULTS = ("ok", "dry_run", "refused", "invalid", "registry_error", "provider_error",
           "conflict", "verify_error", "not_leader", "state_error", "error")


class DnsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.last_sync = Gauge("stamp_dns_last_sync_timestamp_seconds",
                               "When the last pass ended (Unix time).", registry=r)
        self.last_success = Gauge("stamp_dns_last_success_timestamp_seconds",
                                  "When a pass last ended with result ok or dry_run.", registry=r)
        self.last_result = Gauge("stamp_dns_last_sync_result",
                                 "1 for the last pass's result, 0 for the others.", ["result"], registry=r)
        self.syncs = Counter("stamp_dns_syncs", "Passes by result.", ["result"], registry=r)
        self.changes = Counter("stamp_dns_changes_applied",
                               "Record changes applied and verified, by action.", ["action"], registry=r)
        self.refused = Counter("stamp_dns_plans_refused",
                               "Plans refused: over max_change_fraction without --force, or against provider rules.",
                               registry=r)
        self.owned = Gauge("stamp_dns_owned_records", "Resource records this owner holds, as last read.", registry=r)
        self.pending = Gauge("stamp_dns_plan_changes", "Changes in the last plan (applied or not).", registry=r)
        self.published = Gauge("stamp_dns_stamp_published",
                               "1 if the stamp is published (healthy, or within its hysteresis).", ["stamp"],
                               registry=r)
        for result in RESULTS:
            self.last_result.labels(result).set(0)
            self.syncs.labels(result)
        for action in ("create", "update", "delete"):
            self.changes.labels(action)

    def observe(self, result, now: float) -> None:
        """Record one pass (a sync.PassResult)."""
        self.last_sync.set(now)
        for name in RESULTS:
            self.last_result.labels(name).set(1 if name == result.result else 0)
        self.syncs.labels(result.result).inc()
        if result.result in ("ok", "dry_run"):
            self.last_success.set(now)
        if result.result in ("refused", "invalid"):
            self.refused.inc()
        for change in result.applied:
            self.changes.labels(change.action).inc()
        if result.plan is not None:
            self.owned.set(result.plan.owned_records)
            self.pending.set(len(result.plan.changes))

    def observe_stamps(self, published: dict[str, bool]) -> None:
        self.published.clear()
        for stamp, up in published.items():
            self.published.labels(stamp).set(1 if up else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: str) -> None:
        write_atomic(path, self.render())


async def start_server(listen: str, metrics: DnsMetrics) -> web.AppRunner:
    """GET /metrics and GET /healthz on `listen`; the caller cleans the runner up."""
    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_hostport(listen)
    await web.TCPSite(runner, host.strip("[]"), port).start()
    return runner
