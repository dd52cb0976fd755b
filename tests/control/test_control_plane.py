"""The control-plane feed: polled with ETags; a dead control plane disturbs nothing, and a
restart while it is down comes up from the last known good."""

from __future__ import annotations

import pytest

from tests.control.support import ControlPlaneServer, SteadyLoad, route
from tests.support.router_proc import stamp
from tests.support.servers import wait_until


@pytest.fixture
def control_plane(bg, backends):
    eu1, eu2 = backends("eu-1", "eu-2")
    server = bg.run(ControlPlaneServer({
        "version": "cp-1",
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-1", "globex": "eu-2"},
    }).start())
    yield server
    bg.run(server.stop())


def polls(router, result: str) -> float:
    return router.metric("stamp_router_control_polls_total", result=result)


def test_the_router_follows_the_control_plane_and_outlives_it(bg, control_plane, router_proc):
    # The local file holds only the bootstrap: where the config comes from.
    router = router_proc({"control": {"url": control_plane.url, "interval": 0.1, "max_backoff": 0.4}})
    info = router.admin_json("/config")
    assert (info["version"], info["source"], info["lkg"]) == ("cp-1", control_plane.url, False)
    assert route(router, "acme") == "eu-1"

    wait_until(lambda: polls(router, "not_modified") >= 2, message="conditional polls")
    assert all(p["if_none_match"] == control_plane.etag() for p in control_plane.polls if p["status"] == 304)

    control_plane.doc = {**control_plane.doc, "version": "cp-2", "tenants": {"acme": "eu-2", "globex": "eu-2"}}
    wait_until(lambda: route(router, "acme") == "eu-2", message="the new document served")
    assert router.admin_json("/config")["version"] == "cp-2"

    # An invalid document is refused once: its ETag is remembered, so it is not judged again.
    good = control_plane.doc
    control_plane.doc = {**good, "version": "cp-bad", "stamps": []}
    wait_until(lambda: router.metric("stamp_router_config_reloads_total", source="url", result="rejected") == 1)
    wait_until(lambda: polls(router, "not_modified") >= 6)
    assert router.metric("stamp_router_config_reloads_total", source="url", result="rejected") == 1
    assert router.admin_json("/config")["version"] == "cp-2"
    control_plane.doc = good

    with SteadyLoad(router, "acme") as load:
        wait_until(lambda: load.count() >= 30)
        bg.run(control_plane.stop())
        wait_until(lambda: polls(router, "error") >= 3, message="failed polls")
        errors = load.count()
        wait_until(lambda: load.count() >= errors + 30)
    assert load.failures() == []
    assert {s for seq in load.stamps_per_connection() for s in seq} == {"eu-2"}
    assert router.admin_json("/readyz")["checks"]["config"]["control_plane"]["failures"] >= 3

    # Restart while the control plane is down: the last known good serves.
    router.stop()
    router.start()
    ready = router.admin_json("/readyz")
    assert ready["ready"] is True
    config = ready["checks"]["config"]
    assert (config["lkg"], config["version"], config["source"]) == (True, "cp-2", control_plane.url)
    assert config["last_reload"]["result"] == "invalid"
    assert "control.url" in config["last_reload"]["errors"][0]["path"]
    assert router.metric("stamp_router_config_lkg_in_use") == 1
    assert "starting from the last known good" in router.stderr()
    status, headers, _ = router.request(headers={"X-Tenant-ID": "acme"})
    assert (status, headers["x-stamp"]) == (200, "eu-2")

    # The control plane comes back with what the last known good was taken from.
    bg.run(control_plane.start())
    wait_until(lambda: router.metric("stamp_router_config_lkg_in_use") == 0, message="the fallback cleared")
    assert router.admin_json("/config")["version"] == "cp-2"


def test_a_large_document_is_followed_and_its_last_known_good_serves_a_restart(bg, control_plane, router_proc):
    # Over 1 MiB with "tenants" last: its table is read in slices and kept as its text.
    tenants = {f"tenant-{i:05d}": "eu-1" for i in range(60_000)}
    control_plane.doc = {**control_plane.doc, "tenants": tenants}
    assert len(control_plane.body()) > 1 << 20
    router = router_proc({"control": {"url": control_plane.url, "interval": 0.1, "max_backoff": 0.4}})
    assert router.admin_json("/config")["pins"] == 60_000
    control_plane.doc = {**control_plane.doc, "version": "cp-2", "tenants": {**tenants, "tenant-01234": "eu-2"}}
    wait_until(lambda: route(router, "tenant-01234") == "eu-2", message="the new document served")
    wait_until(lambda: router.admin_json("/config")["last_reload"].get("persisted") is True,
               message="the new document written as the last known good")

    bg.run(control_plane.stop())
    router.stop()
    router.start()
    assert router.metric("stamp_router_config_lkg_in_use") == 1
    assert router.admin_json("/config")["version"] == "cp-2"
    assert route(router, "tenant-01234") == "eu-2" and route(router, "tenant-00001") == "eu-1"
