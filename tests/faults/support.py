"""Shared pieces of the fault suite: a router with one tenant pinned to a live backend,
and the checks that it serves that pin."""

from __future__ import annotations

import json

from tests.support.router_proc import RouterProcess, stamp


def pinned_doc(backend_address: str, **extra) -> dict:
    """One stamp on a live backend, `acme` pinned to it, header routing."""
    return {"routing": {"sources": ["header"]},
            "stamps": [stamp("eu-1", [backend_address]), stamp("eu-2", ["127.0.0.1:9"])],
            "tenants": {"acme": "eu-1"}, **extra}


def serves_acme(proc: RouterProcess) -> bool:
    status, headers, _ = proc.request(headers={"X-Tenant-ID": "acme"})
    return status == 200 and headers.get("x-stamp") == "eu-1"


def ready_checks(proc: RouterProcess) -> dict:
    status, _, data = proc.admin("GET", "/readyz")
    return {"status": status, **json.loads(data)}
