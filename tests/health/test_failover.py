"""Stamp failover against real processes: a dead or offline stamp's tenants go to the first
healthy stamp of its failover list, never across a residency boundary; none left: 503."""

from __future__ import annotations

import json

import pytest

from router.config import ConfigError, load_bytes
from tests.health.support import FAST, down_deadline, stamp_status
from tests.support.router_proc import stamp
from tests.support.servers import stop_backend, wait_until


def get(router, tenant: str):
    return router.request("GET", "/who", headers={"X-Tenant-ID": tenant})


def test_a_dead_stamp_fails_over_and_says_so(bg, backends, router_proc):
    a1, a2, b1 = backends("a1", "a2", "b1")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "admin": {"access_log": True},
        "stamps": [stamp("eu-1", [a1.address, a2.address], failover=["eu-2"], health=FAST),
                   stamp("eu-2", [b1.address], health=FAST)],
        "tenants": {"acme": "eu-1"},
    })
    assert get(router, "acme")[1]["x-stamp"] == "eu-1"
    bg.run(stop_backend(a1))
    bg.run(stop_backend(a2))
    wait_until(lambda: stamp_status(router, "eu-1")["healthy"] is False, down_deadline(FAST),
               message="eu-1 seen down")
    for _ in range(5):
        status, headers, body = get(router, "acme")
        assert status == 200
        assert json.loads(body)["stamp"] == "b1"
        assert headers["x-stamp"] == "eu-2"
        assert headers["x-stamp-failover"] == "eu-1"
    assert router.metric("stamp_router_failovers_total", from_stamp="eu-1", to_stamp="eu-2") >= 5
    assert b1.hits()[-1]["headers"]["X-Tenant-ID"] == "acme"

    def failover_lines():
        lines = [json.loads(ln) for ln in router.stdout().splitlines() if ln.startswith("{")]
        return [ln for ln in lines if ln.get("failover_from") == "eu-1"]

    lines = wait_until(failover_lines, 5, message="access log lines of the failover")
    assert lines[0]["stamp"] == "eu-2" and lines[0]["tenant"] == "acme" and lines[0]["status"] == 200


def test_an_offline_stamp_fails_over_without_a_probe(backends, router_proc):
    a, b = backends("a", "b")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [a.address], failover=["eu-2"], state="offline"), stamp("eu-2", [b.address])],
        "tenants": {"acme": "eu-1"},
    })
    status, headers, _ = get(router, "acme")
    assert (status, headers["x-stamp"], headers["x-stamp-failover"]) == (200, "eu-2", "eu-1")
    assert a.hits() == []
    assert stamp_status(router, "eu-1")["state"] == "offline" and stamp_status(router, "eu-1")["healthy"] is False


def test_a_dead_stamp_without_failover_answers_503_with_retry_after(bg, backends, router_proc):
    (a,) = backends("a")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject", "retry_after": "7s"},
        "stamps": [stamp("eu-1", [a.address], failover=[], health=FAST)],
        "tenants": {"acme": "eu-1"},
    })
    bg.run(stop_backend(a))
    wait_until(lambda: stamp_status(router, "eu-1")["healthy"] is False, down_deadline(FAST), message="eu-1 down")
    status, headers, body = get(router, "acme")
    assert status == 503
    assert headers["retry-after"] == "7"
    assert "error" in json.loads(body)


def test_a_draining_stamp_serves_its_pins_and_takes_no_new_tenants(backends, router_proc):
    a, b = backends("a", "b")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "hash"},
        "stamps": [stamp("eu-1", [a.address], state="draining"), stamp("eu-2", [b.address])],
        "tenants": {"acme": "eu-1"},
    })
    assert get(router, "acme")[1]["x-stamp"] == "eu-1"
    placed = {get(router, f"tenant-{i}")[1]["x-stamp"] for i in range(40)}
    assert placed == {"eu-2"}


# -- residency --------------------------------------------------------------------------------

RESIDENCY_STAMPS = """
[routing]
sources = ["header"]

[[stamps]]
name = "eu-1"
region = "eu"
backends = ["127.0.0.1:9001"]
failover = ["eu-2", "us-1"]

[[stamps]]
name = "eu-2"
region = "eu"
backends = ["127.0.0.1:9002"]

[[stamps]]
name = "us-1"
region = "us"
backends = ["127.0.0.1:9003"]
allow_cross_residency_failover = true
failover = ["eu-1"]
"""


def test_config_refuses_failover_across_residency():
    with pytest.raises(ConfigError) as err:
        load_bytes(RESIDENCY_STAMPS.encode(), fmt="toml", source="test")
    paths = [path for path, _ in err.value.errors]
    assert paths == ["stamps[0].failover[1]"]       # us-1's own permission does not extend to eu-1
    assert "residency" in err.value.errors[0][1]


def test_an_eu_stamp_is_never_failed_over_to_a_us_stamp(bg, backends, router_proc):
    eu1, eu2, us1 = backends("eu1", "eu2", "us1")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [eu1.address], failover=["eu-2"], health=FAST),
                   stamp("eu-2", [eu2.address], health=FAST),
                   # us-1 may send its tenants to the EU; that opens nothing the other way.
                   stamp("us-1", [us1.address], region="us", failover=["eu-1"],
                         allow_cross_residency_failover=True, health=FAST)],
        "tenants": {"acme": "eu-1", "globex": "us-1"},
    })
    bg.run(stop_backend(eu1))
    bg.run(stop_backend(eu2))
    wait_until(lambda: not stamp_status(router, "eu-1")["healthy"] and not stamp_status(router, "eu-2")["healthy"],
               down_deadline(FAST), message="both EU stamps down")
    for _ in range(10):
        assert get(router, "acme")[0] == 503
    assert us1.hits() == []
    assert get(router, "globex")[1]["x-stamp"] == "us-1"
