"""The router's TLS state over time: the https listener's certificates and the upstream
contexts, prepared with each config, reloaded when their files change or on SIGHUP.

A reload is validate-then-swap like a config reload: every pair is read and checked
first (router.tls.certs), and anything wrong (an unreadable file, a key of another
certificate, an expired certificate, a configured domain's name dropped) leaves the
certificates being served as they are, with the error logged and counted. Connections
already open keep the certificate they were opened with.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from router.control.sources import FileWatcher
from router.errors import ConfigError
from router.tls.server import ListenTls, ServerTls, load_certs, lost_names
from router.tls.upstream import UpstreamContexts, UpstreamTls

log = logging.getLogger("stamp_router.tls")


class TlsRuntime(Collector):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.server: ServerTls | None = None
        self.upstream = UpstreamContexts()
        self._config = None          # the config being served, and its base_dir
        self._base_dir = "."
        self._pending: dict[ListenTls, ServerTls] = {}
        self.reloads = {"ok": 0, "refused": 0}
        self.last_error: str | None = None
        if registry is not None:
            registry.register(self)

    # -- with each config ----------------------------------------------------------------
    def prepare(self, valid) -> None:
        """Everything TLS a config needs, built and checked; raises ConfigError. Serving
        changes only in adopt()."""
        cfg, base_dir = valid.config, valid.base_dir
        self.upstream.prepare(cfg, base_dir, time.time())
        spec = ListenTls.of(cfg.listen, base_dir)
        if spec is not None and (self.server is None or self.server.spec != spec):
            certs, client_ca = load_certs(spec, time.time())
            self._pending = {spec: ServerTls(spec, certs, client_ca)}

    def adopt(self, config, base_dir: str) -> None:
        self._config, self._base_dir = config, base_dir
        self.upstream.retain(config, base_dir)
        spec = ListenTls.of(config.listen, base_dir)
        if spec is not None and spec in self._pending:
            if self.server is None:
                self.server = self._pending.pop(spec)
            else:
                # Same listener, other files or settings: the new certificates on the
                # base context that holds the ticket keys when only the pairs changed.
                fresh = self._pending.pop(spec)
                if (spec.ciphers, spec.require_sni, spec.client_ca_file, spec.client_verify) == \
                        (self.server.spec.ciphers, self.server.spec.require_sni, self.server.spec.client_ca_file,
                         self.server.spec.client_verify):
                    self.server.replace(fresh.certs, spec)
                else:
                    self.server = fresh
        self._pending.clear()

    def upstream_for(self, snapshot) -> dict[str, UpstreamTls]:
        return self.upstream.for_config(snapshot.config, snapshot.valid.base_dir)

    # -- files ---------------------------------------------------------------------------
    def watched_paths(self) -> list[str]:
        paths = []
        if self.server is not None:
            spec = self.server.spec
            paths += [p for pair in spec.pairs for p in pair]
            if spec.client_ca_file:
                paths.append(spec.client_ca_file)
        cfg = self._config
        if cfg is not None:
            for s in cfg.stamps:
                t = s.tls
                if t is not None and t.enabled:
                    paths += [os.path.join(self._base_dir, p) for p in (t.ca_file, t.client_cert_file,
                                                                         t.client_key_file) if p]
        return list(dict.fromkeys(paths))

    def watcher(self, interval, then: Callable[[str], None]) -> FileWatcher:
        """Polls the files; `then(why)` after a reload this process accepted (the
        supervisor tells its workers to reread them)."""
        async def on_change() -> None:
            why = "a certificate file changed"
            if self.reload_files(why):
                then(why)
        return FileWatcher(self.watched_paths, interval, on_change)

    def reload_files(self, why: str) -> bool:
        """Read every certificate, key and CA file again; swap only if all are good."""
        if self._config is None:
            return False
        try:
            self.upstream.prepare(self._config, self._base_dir, time.time(), fresh=True)
            server = self.server
            if server is not None:
                certs, client_ca = load_certs(server.spec, time.time())
                lost = lost_names(server.certs, certs, self._config.routing.domains)
                if lost:
                    raise ConfigError([("listen.certificates", "the new certificates no longer cover "
                                        + ", ".join(lost) + " (a name of routing.domains)")])
                if client_ca != server.client_ca:
                    server = ServerTls(server.spec, certs, client_ca)
                    self.server = server
                else:
                    server.replace(certs, server.spec)
        except ConfigError as exc:
            self.reloads["refused"] += 1
            self.last_error = "; ".join(f"{p}: {m}" for p, m in exc.errors)
            log.error("certificate reload (%s) refused, still serving the previous ones: %s", why, self.last_error)
            return False
        self.reloads["ok"] += 1
        self.last_error = None
        log.info("certificates reloaded (%s)", why)
        return True

    # -- admin and metrics ----------------------------------------------------------------
    def info(self) -> dict:
        server = self.server
        return {
            "https": server is not None,
            "certificates": [p.info() for p in server.certs.pairs] if server else [],
            "reloads": dict(self.reloads),
            "last_error": self.last_error,
        }

    def collect(self) -> Iterator:
        expiry = GaugeMetricFamily("stamp_router_tls_certificate_expiry_timestamp_seconds",
                                   "When each certificate served on listen.https expires (notAfter).",
                                   labels=["cert_file", "names", "key_type"])
        server = self.server
        if server is not None:
            for p in server.certs.pairs:
                expiry.add_metric([p.cert_file, ",".join(p.names), p.key_type], p.not_after)
        yield expiry
        reloads = CounterMetricFamily("stamp_router_tls_certificate_reloads", "Certificate reloads after a file "
                                      "change or SIGHUP, by result (ok, refused).", labels=["result"])
        for result, n in self.reloads.items():
            reloads.add_metric([result], n)
        yield reloads
