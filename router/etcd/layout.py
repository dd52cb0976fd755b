"""Where the router's keys are in etcd, and a client made from an `[etcd]` table.

Shared by the config source (router.control.etcd_source), `stamp-router etcd
import/export` and the DNS updater's lock (router.dns), so that none of them imports
another's module to find a key or reach etcd.

    PREFIX/config          the config document, JSON or TOML, without its tenants
    PREFIX/tenants/<id>    one pin, as JSON: "eu-1" or {"stamp": "eu-1", "mode": "read-only"}
    PREFIX/dns-lock/<name> the DNS updater's lock (router.dns.lock)
    PREFIX/dns-state/<name> its hysteresis counts, shared by its replicas (router.dns.sync)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from router.etcd.client import EtcdClient, Tls

if TYPE_CHECKING:
    from router.config.schema import Etcd


@dataclass(frozen=True)
class Layout:
    prefix: str

    @property
    def root(self) -> bytes:
        return (self.prefix.rstrip("/") + "/").encode()

    @property
    def config_key(self) -> bytes:
        return self.root + b"config"

    @property
    def tenants(self) -> bytes:
        return self.root + b"tenants/"

    def tenant_key(self, tenant: str) -> bytes:
        return self.tenants + tenant.encode()

    def tenant_of(self, key: bytes) -> str | None:
        if key.startswith(self.tenants):
            return key[len(self.tenants):].decode("utf-8", "replace")
        return None

    def dns_lock_key(self, name: str) -> bytes:
        return self.root + b"dns-lock/" + name.encode()

    def dns_state_key(self, name: str) -> bytes:
        return self.root + b"dns-state/" + name.encode()


def client_for(settings: Etcd, resolve: Callable[[str], str]) -> EtcdClient:
    """A client for an `[etcd]` table; files are relative to the config file (`resolve`).
    Reads the password file (OSError if it cannot be read)."""
    tls = None
    if any(e.startswith("https://") for e in settings.endpoints):
        tls = Tls(ca_file=resolve(settings.ca_file) if settings.ca_file else None,
                  cert_file=resolve(settings.cert_file) if settings.cert_file else None,
                  key_file=resolve(settings.key_file) if settings.key_file else None)
    password = None
    if settings.password_file:
        with open(resolve(settings.password_file), encoding="utf-8") as fh:
            password = fh.read().strip()
    return EtcdClient(list(settings.endpoints), tls=tls, user=settings.user, password=password,
                      timeout=settings.timeout)
