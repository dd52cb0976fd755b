"""Hot reload against the real `stamp-router serve` process, under a steady bounded load."""

from __future__ import annotations

import json
import signal

import orjson
import pytest

from tests.control.support import (TOKEN, WRITERS, SteadyLoad, auth, put_json, route, write_by_rename,
                                   write_configmap, write_doc)
from tests.support.router_proc import stamp, to_toml
from tests.support.servers import wait_until


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def two_stamps(backends, token_file):
    """eu-1 and eu-2 backends, and a config pinning acme to eu-1."""
    eu1, eu2 = backends("eu-1", "eu-2")
    doc = {
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "admin": {"token_file": token_file},
        "control": {"watch_interval": 0.1},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-1", "globex": "eu-2"},
    }
    return eu1, eu2, doc


def reloads(router, source: str, result: str) -> float:
    return router.metric("stamp_router_config_reloads_total", source=source, result=result)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_file_change_moves_a_tenant_with_zero_failed_requests(two_stamps, router_proc, writer, tmp_path):
    eu1, eu2, doc = two_stamps
    router = router_proc(doc, start=False)
    if writer == "configmap":                  # serve from the symlinked path, as in a pod
        write_configmap(router.config_path, to_toml(router.doc))
    router.start()
    with SteadyLoad(router, "acme") as load:
        wait_until(lambda: load.count() >= 50, message="load before the change")
        write_doc(router, WRITERS[writer], {"tenants": {"acme": "eu-2", "globex": "eu-2"}})
        wait_until(lambda: route(router, "acme") == "eu-2", message="the new pin served")
        moved = load.count()
        wait_until(lambda: load.count() >= moved + 50, message="load after the change")
    assert load.failures() == []
    for seq in load.stamps_per_connection():   # one switch, never back
        assert seq in (["eu-1", "eu-2"], ["eu-2"]), seq
    assert eu2.hits("/load")[-1]["headers"]["X-Tenant-ID"] == "acme"
    assert reloads(router, "file", "success") == 1
    assert router.metric("stamp_router_config_last_reload_success") == 1


def test_an_invalid_file_is_refused_and_the_old_routing_goes_on(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc(doc)
    version = router.admin_json("/config")["version"]
    bad_stamps = [dict(s) for s in doc["stamps"]]
    bad_stamps[0]["failover"] = ["nowhere"]
    bad_stamps[1]["backends"] = ["not-an-address"]
    with SteadyLoad(router, "acme") as load:
        wait_until(lambda: load.count() >= 30)
        write_doc(router, write_by_rename, {"stamps": bad_stamps, "tenants": {"acme": "eu-2"}})
        wait_until(lambda: reloads(router, "file", "rejected") == 1, message="the rejection")
        refused = load.count()
        wait_until(lambda: load.count() >= refused + 30)
    assert load.failures() == []
    assert {s for seq in load.stamps_per_connection() for s in seq} == {"eu-1"}
    assert route(router, "acme") == "eu-1"
    info = router.admin_json("/config")
    assert info["version"] == version
    assert info["last_reload"]["result"] == "invalid"
    assert {e["path"] for e in info["last_reload"]["errors"]} >= {"stamps[0].failover[0]", "stamps[1].backends[0]"}
    ready = router.admin_json("/readyz")
    assert ready["ready"] and ready["checks"]["config"]["last_reload"]["result"] == "invalid"
    assert router.metric("stamp_router_config_last_reload_success") == 0
    wait_until(lambda: "stamps[0].failover[0]" in router.stderr(), message="the error in the log")

    write_doc(router, write_by_rename, {"tenants": {"acme": "eu-2"}})   # fixed: accepted
    wait_until(lambda: route(router, "acme") == "eu-2")
    assert router.metric("stamp_router_config_last_reload_success") == 1


def test_put_config_needs_the_token_and_answers_every_error(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc(doc)
    before = router.admin_json("/config")
    moved = {**router.doc, "tenants": {"acme": "eu-2", "globex": "eu-2"}}

    for headers in ({}, auth("wrong-token"), {"Authorization": "Basic " + TOKEN}, {"Authorization": TOKEN}):
        status, resp_headers, body = router.admin("PUT", "/config", json.dumps(moved).encode(),
                                                   {"Content-Type": "application/json", **headers})
        assert status == 401, headers
        assert resp_headers["WWW-Authenticate"].startswith("Bearer")
    assert router.admin_json("/config")["digest"] == before["digest"]
    assert route(router, "acme") == "eu-1"

    broken = {**moved, "routing": {"sources": ["header", "telepathy"]}, "stamps": [{"name": "eu-1"}]}
    status, body = put_json(router, "/config", broken)
    assert status == 422
    paths = {e["path"] for e in body["errors"]}
    assert {"routing.sources[1]", "stamps[0].region", "stamps[0].backends"} <= paths
    assert router.admin_json("/config")["digest"] == before["digest"]

    status, body = put_json(router, "/config", moved)
    assert status == 200 and body["result"] == "applied"
    # Where the time went, phase by phase, adding up to no more than the whole.
    assert set(body["phases"]) == {"validate", "plan", "swap"}
    assert all(v >= 0 for v in body["phases"].values())
    assert sum(body["phases"].values()) <= body["seconds"] + 0.001
    assert route(router, "acme") == "eu-2"
    status, _, data = router.admin("PUT", "/config", to_toml({**moved, "tenants": {"acme": "eu-1", "globex": "eu-2"}}).encode(),
                                   {"Content-Type": "application/toml", **auth()})
    assert status == 200, data
    assert route(router, "acme") == "eu-1"
    assert reloads(router, "admin", "success") == 2 and reloads(router, "admin", "rejected") == 1


def test_a_pushed_pin_takes_effect_on_the_next_request_and_survives_a_restart(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc(doc)
    assert router.request(headers={"X-Tenant-ID": "acme"})[1]["x-stamp"] == "eu-1"

    status, body = put_json(router, "/tenants/acme", {"stamp": "eu-2"}, token=None)
    assert status == 401
    status, body = put_json(router, "/tenants/acme", {"stamp": "eu-2"})
    assert status == 200 and body["result"] == "applied"
    assert router.request(headers={"X-Tenant-ID": "acme"})[1]["x-stamp"] == "eu-2"
    status, body = put_json(router, "/tenants/newco", "eu-1")
    assert status == 200
    assert router.request(headers={"X-Tenant-ID": "newco"})[1]["x-stamp"] == "eu-1"

    status, body = put_json(router, "/tenants/acme", {"stamp": "us-9"})
    assert status == 422 and body["errors"][0]["path"] == "tenants.acme.stamp"
    status, _, _ = router.admin("DELETE", "/tenants/globex", headers=auth())
    assert status == 200
    assert router.request(headers={"X-Tenant-ID": "globex"})[0] == 404     # unpinned = reject
    assert router.admin("DELETE", "/tenants/globex", headers=auth())[0] == 404
    served = router.admin_json("/config")
    assert served["version"].endswith("+3") and served["local_edits"] == 3

    router.stop()                              # the file did not change: the pushes stay
    router.start()
    assert router.admin_json("/config")["digest"] == served["digest"]
    assert router.request(headers={"X-Tenant-ID": "acme"})[1]["x-stamp"] == "eu-2"
    assert router.request(headers={"X-Tenant-ID": "newco"})[1]["x-stamp"] == "eu-1"
    assert router.request(headers={"X-Tenant-ID": "globex"})[0] == 404



def test_a_batch_of_pins_applies_as_one_edit_or_not_at_all(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc(doc)                  # acme on eu-1, globex on eu-2
    patch = {"acme": "eu-2", "newco": {"stamp": "eu-1", "mode": "read-only"}, "globex": None}
    assert put_json(router, "/tenants", patch, token=None, method="PATCH")[0] == 401
    status, body = put_json(router, "/tenants", {**patch, "bad id": "eu-1", "zeta": "us-9", "omega": 7},
                            method="PATCH")
    assert status == 422                       # every error at once, and nothing changed
    assert sorted(e["path"] for e in body["errors"]) == ["tenants.omega", "tenants.zeta.stamp", "tenants['bad id']"]
    assert (route(router, "acme"), route(router, "newco")) == ("eu-1", None)

    status, body = put_json(router, "/tenants", patch, method="PATCH")
    assert status == 200 and body["result"] == "applied" and body["version"].endswith("+1")
    assert (route(router, "acme"), route(router, "newco"), route(router, "globex")) == ("eu-2", "eu-1", None)
    assert router.request("POST", headers={"X-Tenant-ID": "newco"}, body=b"x")[0] == 403      # read-only
    assert put_json(router, "/tenants", patch, method="PATCH")[1]["result"] == "unchanged"

    # Removing every pin is refused like an empty tenants table, unless forced.
    status, body = put_json(router, "/tenants", {"acme": None, "newco": None}, method="PATCH")
    assert status == 409 and body["plan"]["pins_dropped"] == 2 and route(router, "acme") == "eu-2"
    router.stop()                              # the batch was journaled: a restart serves it
    router.start()
    assert (route(router, "acme"), route(router, "newco"), route(router, "globex")) == ("eu-2", "eu-1", None)
    assert put_json(router, "/tenants", {"acme": None, "newco": None}, method="PATCH", force="true")[0] == 200
    assert route(router, "acme") is None

def test_the_drop_guard_refuses_an_empty_tenants_table(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc(doc)
    write_doc(router, write_by_rename, {"tenants": {}})
    wait_until(lambda: reloads(router, "file", "rejected") == 1, message="the refusal")
    assert route(router, "acme") == "eu-1"
    last = router.admin_json("/config")["last_reload"]
    assert last["result"] == "unsafe" and last["plan"]["pins_dropped"] == 2

    empty = {**router.doc, "tenants": {}}
    status, body = put_json(router, "/config", empty)
    assert status == 409 and "drops 2 of 2 pins" in body["plan"]["reasons"][0]
    assert route(router, "acme") == "eu-1"
    status, body = put_json(router, "/config", empty, force="true")
    assert status == 200
    assert route(router, "acme") is None       # unpinned = reject


def test_sighup_rereads_the_file(two_stamps, router_proc):
    _, _, doc = two_stamps
    router = router_proc({**doc, "control": {"watch_file": False}})
    write_doc(router, write_by_rename, {"tenants": {"acme": "eu-2", "globex": "eu-2"}})
    assert route(router, "acme") == "eu-1"     # not watched
    router.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: route(router, "acme") == "eu-2", message="the reload on SIGHUP")


def test_a_large_tenants_file_is_watched_and_reloaded(two_stamps, router_proc, tmp_path):
    _, _, doc = two_stamps
    table = {f"tenant-{i:05d}": "eu-1" for i in range(20000)}        # ~500 KB: read in slices
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_bytes(orjson.dumps(table))
    router = router_proc({**doc, "tenants": {"acme": "eu-1"}, "tenants_file": str(tenants_file)})
    assert router.admin_json("/config")["pins"] == 20001
    with SteadyLoad(router, "tenant-12345") as load:
        wait_until(lambda: load.count() >= 30)
        table["tenant-12345"] = "eu-2"
        write_by_rename(tenants_file, orjson.dumps(table).decode())
        wait_until(lambda: route(router, "tenant-12345") == "eu-2")
    assert load.failures() == []
    table["tenant-00001"] = "nowhere"
    write_by_rename(tenants_file, orjson.dumps(table).decode())
    wait_until(lambda: reloads(router, "file", "rejected") == 1)
    errors = router.admin_json("/config")["last_reload"]["errors"]
    assert errors == [{"path": "tenants_file.tenant-00001", "message": "unknown stamp 'nowhere'"}]



def test_a_reloaded_tenants_file_is_what_a_restart_from_the_last_known_good_serves(two_stamps, router_proc,
                                                                                  tmp_path):
    # Only a tenants_file pins: the last known good stores the file's text as it is.
    _, _, doc = two_stamps
    table = {f"tenant-{i:05d}": "eu-1" for i in range(20000)}
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_bytes(orjson.dumps(table))
    router = router_proc({**{k: v for k, v in doc.items() if k != "tenants"}, "tenants_file": str(tenants_file)})
    table["tenant-12345"] = "eu-2"
    write_by_rename(tenants_file, orjson.dumps(table, option=orjson.OPT_INDENT_2).decode())
    wait_until(lambda: route(router, "tenant-12345") == "eu-2", message="the change served")
    wait_until(lambda: router.admin_json("/config")["last_reload"].get("persisted") is True,
               message="the change written as the last known good")
    router.stop()
    tenants_file.unlink()                      # the file source fails now
    router.start()
    assert router.metric("stamp_router_config_lkg_in_use") == 1
    assert route(router, "tenant-12345") == "eu-2" and route(router, "tenant-00001") == "eu-1"
    assert router.admin_json("/config")["pins"] == 20000


def test_pins_pushed_onto_a_large_table_route_and_survive_a_restart(two_stamps, router_proc, tmp_path):
    # 60,000 pins: over the size where a push layers its pin on the shared table.
    _, _, doc = two_stamps
    table = {f"tenant-{i:05d}": "eu-1" for i in range(60000)}
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_bytes(orjson.dumps(table))
    router = router_proc({**{k: v for k, v in doc.items() if k != "tenants"}, "tenants_file": str(tenants_file)})
    assert put_json(router, "/tenants/tenant-00007", {"stamp": "eu-2"})[0] == 200
    assert put_json(router, "/tenants/newco", "eu-2")[0] == 200
    assert router.admin("DELETE", "/tenants/tenant-00009", headers=auth())[0] == 200
    for _ in range(2):                         # served, then again after a restart from the journal
        assert (route(router, "tenant-00007"), route(router, "newco"), route(router, "tenant-00008")) == \
            ("eu-2", "eu-2", "eu-1")
        assert route(router, "tenant-00009") is None
        assert router.admin_json("/config")["pins"] == 60000
        router.stop()
        router.start()

def test_no_token_file_means_no_writes(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [eu1.address])]})
    status, body = put_json(router, "/tenants/acme", "eu-1")
    assert status == 403 and "admin.token_file" in body["error"]


def test_no_valid_config_and_no_lkg_exits_1_with_the_errors(router_proc):
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [{"name": "eu-1", "region": "eu"}]},
                         start=False)
    router.start(wait_ready=False)
    assert router.proc.wait(20) == 1
    assert "stamps[0].backends" in router.stderr()
