"""etcd as the config source, against a real etcd and real routers: a fleet sees a pin
within moments, changes arrive in revision order and never twice, and etcd going away
(killed, compacted under a watch) costs no request and no change."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.control.support import TOKEN, SteadyLoad, auth, put_json, route
from tests.support.etcd import etcd  # noqa: F401 - the fixture
from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import wait_until

PREFIX = "/fleet"


def seed(etcd, eu1, eu2, pins: dict, version: str = "etcd-1") -> int:
    etcd.put(f"{PREFIX}/config", json.dumps({
        "version": version,
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
    }))
    rev = 0
    for tenant, pin in pins.items():
        rev = etcd.put(f"{PREFIX}/tenants/{tenant}", json.dumps(pin))
    return rev


def fleet_router(tmp_path, name: str, etcd, **control) -> RouterProcess:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "admin.token").write_text(TOKEN + "\n")
    return RouterProcess(directory, {
        "admin": {"token_file": "admin.token"},
        "control": {"etcd": {"endpoints": [etcd.url], "prefix": PREFIX, "timeout": 1, "max_backoff": 0.5},
                    **control}})


@pytest.fixture
def fleet(tmp_path, backends, etcd):
    eu1, eu2 = backends("eu-1", "eu-2")
    routers: list[RouterProcess] = []

    def make(count: int) -> list[RouterProcess]:
        for i in range(count):
            routers.append(fleet_router(tmp_path, f"r{len(routers)}", etcd).start())
        return routers[-count:]

    make.backends = (eu1, eu2)
    make.procs = routers
    yield make
    for r in routers:
        r.stop()


def revision(router) -> int:
    return router.admin_json("/config")["etcd"]["revision"]


def test_three_routers_follow_one_etcd(etcd, fleet):
    rev = seed(etcd, *fleet.backends, {"acme": "eu-1", "globex": {"stamp": "eu-2", "mode": "read-only"}})
    routers = fleet(3)
    for r in routers:
        info = r.admin_json("/config")
        assert info["version"] == "etcd-1" and info["etcd"]["revision"] == rev and info["etcd"]["state"] == "synced"
        assert route(r, "acme") == "eu-1" and route(r, "globex") == "eu-2"

    put_rev = etcd.put(f"{PREFIX}/tenants/acme", '"eu-2"')
    etcd.put(f"{PREFIX}/tenants/initech", '{"stamp": "eu-1"}')
    del_rev = etcd.delete(f"{PREFIX}/tenants/globex")
    for r in routers:
        wait_until(lambda: revision(r) >= del_rev, 10, message="the pins served everywhere")
        assert (route(r, "acme"), route(r, "initech"), route(r, "globex")) == ("eu-2", "eu-1", None)
        status, headers, _ = r.request(headers={"X-Tenant-ID": "acme"})
        assert status == 200 and headers["x-stamp"] == "eu-2"
        assert r.admin_json("/config")["version"] == f"etcd-1@{del_rev}"
        # One pin edit per change: the table was never rebuilt from a full read.
        assert r.metric("stamp_router_etcd_reads_total", reason="config") == 0
    assert put_rev < del_rev

    # A config change is a reload, on every router.
    seed(etcd, *fleet.backends, {}, version="etcd-2")
    for r in routers:
        wait_until(lambda: r.admin_json("/config")["version"] == "etcd-2", 10, message="the new config")
        assert route(r, "acme") == "eu-2"           # the pins stay: they are their own keys


def test_a_bad_pin_is_refused_and_the_next_good_change_is_read_whole(etcd, fleet):
    seed(etcd, *fleet.backends, {"acme": "eu-1"})
    (router,) = fleet(1)
    etcd.put(f"{PREFIX}/tenants/bad", '"us-9"')
    wait_until(lambda: router.admin_json("/config")["etcd"]["state"] == "refused", 10, message="refused")
    assert route(router, "acme") == "eu-1" and route(router, "bad") is None
    last = router.admin_json("/config")["last_reload"]
    assert last["result"] == "invalid" and "us-9" in json.dumps(last["errors"])
    etcd.put(f"{PREFIX}/tenants/bad", '"eu-2"')
    wait_until(lambda: route(router, "bad") == "eu-2", 10, message="the fixed pin, from a full read")
    # Polled: on a loaded machine a health check of the watch (timeout 1 s here) may fail
    # for a moment, and the state is "down" until the read that follows.
    wait_until(lambda: router.admin_json("/config")["etcd"]["state"] == "synced", 10, message="in step again")


def test_admin_pushes_go_through_etcd_to_every_router(etcd, fleet):
    seed(etcd, *fleet.backends, {"acme": "eu-1"})
    a, b = fleet(2)
    status, body = put_json(a, "/tenants/acme", "eu-2")
    assert status == 200, body
    assert json.loads(etcd.get(f"{PREFIX}/tenants/acme")) == "eu-2"
    assert route(a, "acme") == "eu-2"              # answered once served here
    wait_until(lambda: route(b, "acme") == "eu-2", 10, message="the push on the other router")
    status, body = put_json(a, "/tenants/acme", {"stamp": "us-9"})
    assert status == 422 and json.loads(etcd.get(f"{PREFIX}/tenants/acme")) == "eu-2"
    status, _, data = a.admin("DELETE", "/tenants/acme", headers=auth())
    assert status == 200 and etcd.get(f"{PREFIX}/tenants/acme") is None
    wait_until(lambda: route(b, "acme") is None, 10, message="the delete on the other router")
    status, body = put_json(a, "/config", {"stamps": []})
    assert status == 409 and f"{PREFIX}/config" in body["error"]


def test_a_watch_that_falls_behind_a_compaction_reads_again(etcd, fleet):
    seed(etcd, *fleet.backends, {"t0": "eu-1"})
    (router,) = fleet(1)
    # Stopped, the router reads nothing: etcd's watch of it falls behind (its buffers
    # fill), then the history it still has to send is compacted away.
    os.kill(router.proc.pid, signal.SIGSTOP)
    try:
        for i in range(400):
            etcd.put(f"{PREFIX}/tenants/t{i % 50}", json.dumps("eu-2" if i % 3 else "eu-1"))
            # Bulk the router does not read (not a pin key) fills the buffers on the way.
            etcd.put(f"{PREFIX}/blob", b"x" * 100_000)
        gone = etcd.delete(f"{PREFIX}/tenants/t7")
        etcd.compact(gone)
    finally:
        os.kill(router.proc.pid, signal.SIGCONT)
    wait_until(lambda: revision(router) >= gone, 20, message="caught up past the compaction")
    for i in range(50):
        want = None if i == 7 else json.loads(etcd.get(f"{PREFIX}/tenants/t{i}"))
        assert route(router, f"t{i}") == want, i
    # etcd cancelled the watch (its start was compacted away), or the watch broke while
    # etcd was busy compacting: either way the router read everything anew.
    assert sum(router.metric("stamp_router_etcd_reads_total", reason=r) for r in ("compacted", "reconnect")) >= 1
    etcd.put(f"{PREFIX}/tenants/after", '"eu-1"')
    wait_until(lambda: route(router, "after") == "eu-1", 10, message="following again")


def test_etcd_killed_and_restarted_under_load(etcd, fleet):
    seed(etcd, *fleet.backends, {"acme": "eu-1"})
    (router,) = fleet(1)
    with SteadyLoad(router, "acme") as load:
        wait_until(lambda: load.count() > 50, 10, message="load running")
        etcd.kill()
        wait_until(lambda: not router.admin_json("/config")["etcd"]["connected"], 10, message="etcd seen down")
        status, _, data = router.admin("GET", "/readyz")
        assert status == 200 and json.loads(data)["checks"]["config"]["etcd"]["state"] == "down"
        assert router.metric("stamp_router_etcd_connected") == 0
        served = load.count()
        wait_until(lambda: load.count() > served + 50, 10, message="serving on without etcd")
        etcd.start()
        rev = etcd.put(f"{PREFIX}/tenants/acme", '"eu-2"')
        wait_until(lambda: revision(router) >= rev, 20, message="caught up after the restart")
        wait_until(lambda: load.stamps_per_connection()[0][-1:] == ["eu-2"], 10, message="load on the new pin")
    assert load.failures() == []
    assert router.metric("stamp_router_etcd_connected") == 1
    assert router.metric("stamp_router_etcd_reads_total", reason="reconnect") >= 1


def test_start_with_etcd_down_serves_the_last_known_good(tmp_path, etcd, fleet):
    seed(etcd, *fleet.backends, {"acme": "eu-2"})
    (router,) = fleet(1)
    router.stop()
    etcd.kill()
    router.start()
    info = router.admin_json("/config")
    assert info["lkg"] is True and route(router, "acme") == "eu-2"
    assert info["etcd"]["state"] in ("connecting", "down")
    etcd.start()
    rev = etcd.put(f"{PREFIX}/tenants/acme", '"eu-1"')
    wait_until(lambda: route(router, "acme") == "eu-1", 20, message="caught up once etcd is back")
    # The revision is recorded just after the swap that serves it.
    wait_until(lambda: revision(router) >= rev, 10, message="the revision served")
    assert router.admin_json("/config")["lkg"] is False


def test_a_member_that_hangs_is_noticed_and_caught_up_with(etcd, fleet):
    # A stopped etcd keeps its connections open and answers nothing: what a partitioned
    # member looks like to a watch. The watch's health check notices.
    seed(etcd, *fleet.backends, {"acme": "eu-1"})
    (router,) = fleet(1)
    etcd.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: router.admin_json("/config")["etcd"]["state"] == "down", 15, message="etcd seen hung")
        assert route(router, "acme") == "eu-1"
    finally:
        etcd.proc.send_signal(signal.SIGCONT)
    rev = etcd.put(f"{PREFIX}/tenants/acme", '"eu-2"')
    wait_until(lambda: route(router, "acme") == "eu-2" and revision(router) >= rev, 20, message="caught up")
