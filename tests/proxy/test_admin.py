"""The admin API (docs/admin-api.md) and the access log."""

import json

import pytest

from router.build import current
from tests.support.router_proc import stamp


@pytest.fixture
def router(backends, router_proc):
    eu1, eu2 = backends("eu-1", "eu-2")
    return router_proc({
        "version": "v-test",
        "admin": {"access_log": True},
        "routing": {"sources": ["subdomain", "header"], "domains": ["stamps.test"]},
        "stamps": [stamp("eu-1", [eu1.address], failover=["eu-2"]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-1"},
    })


def test_healthz_and_readyz(router):
    assert router.admin_json("/healthz") == {"status": "alive"}
    ready = router.admin_json("/readyz")
    assert ready["ready"] is True and ready["checks"]["config"]["ok"] is True


def test_config_endpoint(router):
    info = router.admin_json("/config")
    assert info["version"] == "v-test"
    assert len(info["digest"]) == 64
    assert info["source"] == str(router.config_path)
    assert info["loaded_at"] > 0 and info["stamps"] == 2 and info["pins"] == 1


def test_stamps_endpoint(router):
    doc = router.admin_json("/stamps")
    assert doc["version"] == "v-test"
    by_name = {s["name"]: s for s in doc["stamps"]}
    assert set(by_name) == {"eu-1", "eu-2"}
    eu1 = by_name["eu-1"]
    assert eu1["state"] == "active" and eu1["healthy"] is True and eu1["failover"] == ["eu-2"]
    assert eu1["backends"][0]["healthy"] is True and "address" in eu1["backends"][0]


def test_route_endpoint_explains(router):
    pinned = router.admin_json("/route?tenant=acme")
    assert (pinned["tenant"], pinned["source"], pinned["stamp"], pinned["reason"]) == ("acme", "header", "eu-1", "pinned")
    assert pinned["considered"]
    by_host = router.admin_json("/route?host=newco.stamps.test")
    assert by_host["tenant"] == "newco" and by_host["source"] == "subdomain" and by_host["reason"] == "hash"
    status, _, body = router.admin("GET", "/route")
    assert status == 400 and b"tenant" in body


def test_metrics_carry_the_stamp_label(router):
    for _ in range(3):
        assert router.request("GET", "/", headers={"X-Tenant-ID": "acme"})[0] == 200
    assert router.request("GET", "/", headers={"X-Tenant-ID": "bad id"})[0] == 400
    assert router.metric("stamp_router_requests_total", stamp="eu-1", code="2xx") == 3
    assert router.metric("stamp_router_requests_total", stamp="none", code="4xx") == 1
    assert router.metric("stamp_router_request_duration_seconds_count", stamp="eu-1") == 3
    assert router.metric("stamp_router_config_info", version="v-test") == 1
    # The router process decides as this one does: same files, same STAMP_ROUTER_PURE.
    assert router.metric("stamp_router_build_info", build=current().build.value, reason=current().reason.value) == 1
    assert router.metric("stamp_router_config_age_seconds") >= 0


def test_access_log_is_json_lines(router):
    router.request("GET", "/logged?x=1", headers={"X-Tenant-ID": "acme", "X-Request-ID": "req-42"})
    router.stop()  # the log is flushed on exit at the latest
    lines = [json.loads(line) for line in router.stdout().splitlines() if line.startswith("{")]
    entry = next(e for e in lines if e["request_id"] == "req-42")
    assert entry["method"] == "GET" and entry["path"] == "/logged?x=1"
    assert entry["tenant"] == "acme" and entry["tenant_source"] == "header" and entry["stamp"] == "eu-1"
    assert entry["status"] == 200 and entry["backend"].startswith("127.0.0.1:")
    assert entry["client"] == "127.0.0.1" and entry["bytes_out"] > 0
    for key in ("time", "bytes_in", "upstream_duration", "duration"):
        assert key in entry
