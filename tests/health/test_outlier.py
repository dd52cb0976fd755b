"""Passive outlier detection and panic against real processes."""

from __future__ import annotations

import time

from tests.health.support import FAST, SLACK, backend_status, stamp_status, up_deadline
from tests.support.router_proc import stamp
from tests.support.servers import wait_until

TENANT = {"X-Tenant-ID": "acme"}
BASE = 1.0


def doc(*stamps, outlier=None):
    return {"routing": {"sources": ["header"], "unpinned": "reject"},
            "outlier": {"consecutive_failures": 3, "base_ejection": BASE, "max_ejection": 10.0, **(outlier or {})},
            "stamps": list(stamps), "tenants": {"acme": stamps[0]["name"]}}


def send_until(router, predicate, limit: int = 60) -> list[int]:
    """GET as the tenant until predicate() holds; the statuses seen on the way."""
    statuses = []
    while not predicate():
        assert len(statuses) < limit, f"still not there after {limit} requests: {statuses}"
        statuses.append(router.request("GET", "/x", headers=TENANT)[0])
    return statuses


def test_5xx_in_a_row_eject_a_backend_for_a_while_without_health_checks(scripted, router_proc):
    bad = scripted("bad", status=500)
    good = scripted("good")
    router = router_proc(doc(stamp("eu-1", [bad.address, good.address])))   # health checks off

    statuses = send_until(router, lambda: bad.served >= 3)
    assert statuses.count(500) == 3                 # a 5xx is the backend's answer: passed on, not retried
    # The worker reports each failure at once; the supervisor decides the ejection.
    wait_until(lambda: not backend_status(router, "eu-1", bad.address)["healthy"], 10, message="the ejection")
    status = backend_status(router, "eu-1", bad.address)
    assert status["healthy"] is False and status["probe"] == "unknown" and status["last_probe"] is None
    assert status["ejections"] == 1 and status["ejected_until"] > time.time()
    assert router.metric("stamp_router_backend_ejections_total", stamp="eu-1", backend=bad.address) == 1
    assert router.metric("stamp_router_backend_ejected", stamp="eu-1", backend=bad.address) == 1
    served = bad.served
    for _ in range(10):
        assert router.request("GET", "/x", headers=TENANT)[0] == 200
    assert bad.served == served

    wait_until(lambda: backend_status(router, "eu-1", bad.address)["healthy"], BASE + SLACK,
               message="the ejection to end")
    assert backend_status(router, "eu-1", bad.address)["ejected_until"] is None
    send_until(router, lambda: backend_status(router, "eu-1", bad.address)["ejections"] == 2)


def test_live_traffic_alone_never_ejects_more_than_half_a_stamp(scripted, router_proc):
    bad1 = scripted("bad1", status=503)
    bad2 = scripted("bad2", status=503)
    router = router_proc(doc(stamp("eu-1", [bad1.address, bad2.address], health=FAST),
                             outlier={"base_ejection": 30.0, "max_ejection": 60.0}))
    send_until(router, lambda: bad1.served + bad2.served >= 20)
    wait_until(lambda: sum(b["ejections"] for b in stamp_status(router, "eu-1")["backends"]) >= 1, 10,
               message="an ejection")
    backends = stamp_status(router, "eu-1")["backends"]
    assert sorted(b["healthy"] for b in backends) == [False, True]
    assert sum(b["ejections"] for b in backends) == 1
    assert all(b["probe"] == "up" for b in backends)   # their health paths answer fine


def test_panic_routes_to_every_backend_and_ends_when_enough_recover(scripted, router_proc):
    ok = {"s1": True, "s2": False, "s3": False}
    s1, s2, s3 = (scripted(name, health=lambda n, name=name: 200 if ok[name] else 503) for name in ok)
    router = router_proc(doc(stamp("eu-1", [s1.address, s2.address, s3.address], panic_threshold=0.5,
                                   health=FAST)))
    st = stamp_status(router, "eu-1")                 # ready: the first round is in
    assert st["panic"] is True and st["healthy_backends"] == 1 and st["healthy"] is True
    assert router.metric("stamp_router_stamp_panic", stamp="eu-1") == 1
    for _ in range(30):
        assert router.request("GET", "/x", headers=TENANT)[0] == 200
    assert min(s1.served, s2.served, s3.served) > 0    # 1 of 3 healthy < 0.5: all of them take traffic
    assert router.metric("stamp_router_panic_routed_total", stamp="eu-1") >= 30

    ok["s2"] = True
    wait_until(lambda: not stamp_status(router, "eu-1")["panic"], up_deadline(FAST), message="panic to end")
    assert router.metric("stamp_router_stamp_panic", stamp="eu-1") == 0
    served3 = s3.served
    for _ in range(20):
        assert router.request("GET", "/x", headers=TENANT)[0] == 200
    assert s3.served == served3
