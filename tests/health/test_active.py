"""Active health checks against real processes: a backend killed under load leaves
rotation without a failed request, comes back after `rise` probes, and a flapping
backend does not flap routing."""

from __future__ import annotations

import time

from tests.health.support import FAST, Load, backend_status, down_deadline, stamp_status, up_deadline
from tests.support.router_proc import stamp
from tests.support.servers import free_port, start_backend, stop_backend, wait_until

TENANT = {"X-Tenant-ID": "acme"}


def doc(*stamps, **extra):
    return {"routing": {"sources": ["header"], "unpinned": "reject"}, "stamps": list(stamps),
            "tenants": {"acme": stamps[0]["name"]}, **extra}


def test_killed_backend_leaves_rotation_without_failed_requests_and_returns_after_rise(bg, backends, router_proc):
    a, b = backends("a", "b")
    router = router_proc(doc(stamp("eu-1", [a.address, b.address], health=FAST)))
    load = Load(router.port, TENANT).start()
    try:
        load.wait_for(200)
        killed_at = time.monotonic()
        bg.run(stop_backend(a))
        wait_until(lambda: backend_status(router, "eu-1", a.address)["probe"] == "down",
                   down_deadline(FAST), message="probes to mark the killed backend down")
        noticed = time.monotonic() - killed_at
        status = backend_status(router, "eu-1", a.address)
        assert status["healthy"] is False
        assert status["last_probe"]["ok"] is False and status["last_probe"]["error"]
        assert status["consecutive_failures"] >= FAST["fall"]
        hits_b = len(b.hits())
        load.wait_for(200)
        assert len(b.hits()) >= hits_b + 200          # the survivor took the traffic

        ok_probes = router.metric("stamp_router_probes_total", backend=a.address, result="ok")
        bg.run(start_backend(a))                      # same port
        wait_until(lambda: backend_status(router, "eu-1", a.address)["healthy"],
                   up_deadline(FAST), message="the restarted backend back in rotation")
        assert router.metric("stamp_router_probes_total", backend=a.address, result="ok") >= ok_probes + FAST["rise"]
        hits_a = len(a.hits())
        load.wait_for(200)
        assert len(a.hits()) > hits_a                 # and it takes traffic again
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.ok > 600
    assert noticed <= down_deadline(FAST)
    assert stamp_status(router, "eu-1")["healthy"] is True


def test_a_backend_dead_at_start_is_out_once_ready(backends, router_proc):
    """/readyz waits for the first round, and one failed first probe is enough."""
    (a,) = backends("a")
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc(doc(stamp("eu-1", [a.address, dead], health={**FAST, "fall": 5})))
    st = stamp_status(router, "eu-1")
    by_address = {b["address"]: b for b in st["backends"]}
    assert by_address[dead]["healthy"] is False and by_address[dead]["probe"] == "down"
    assert by_address[dead]["last_probe"]["error"].startswith("connect")
    assert by_address[a.address]["healthy"] is True and by_address[a.address]["last_probe"]["status"] == 200
    assert st["healthy"] is True and st["healthy_backends"] == 1
    for _ in range(20):
        assert router.request("GET", "/x", headers=TENANT)[0] == 200
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1", backend=dead, kind="connect") == 0


def test_flapping_probes_do_not_flap_routing(scripted, backends, router_proc):
    # Probe n answers 200 when n is odd: 200, 503, 200, ...
    flapper = scripted("flapper", health=lambda n: 200 if n % 2 else 503)
    (steady,) = backends("steady")
    router = router_proc(doc(stamp("eu-1", [flapper.address, steady.address], health=FAST)))
    samples = []

    def enough_probes():
        samples.append(backend_status(router, "eu-1", flapper.address)["healthy"])
        return flapper.probes >= 12

    wait_until(enough_probes, 12 * FAST["interval"] + 5, interval=0.05, message="a dozen alternating probes")
    assert set(samples) == {True}                 # first probe passed: up, and one failure never reaches fall
    assert router.metric("stamp_router_backend_health_changes_total", stamp="eu-1", backend=flapper.address) == 0
    served = flapper.served
    for _ in range(10):
        assert router.request("GET", "/x", headers=TENANT)[0] == 200
    assert flapper.served > served                # still in rotation
