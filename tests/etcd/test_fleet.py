"""A router fed from etcd when etcd itself moves: an admin push that races another write
(compare-and-set on the revision served), and the leader of a three-member cluster
killed while pins are written (a fresh read at one revision, nothing missed)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.control.support import TOKEN, put_json, route
from tests.control.test_etcd_source import PREFIX, revision, seed
from tests.support.etcd import EtcdCluster, EtcdRelay, etcd, need_etcd  # noqa: F401 - the fixture
from tests.support.router_proc import RouterProcess
from tests.support.servers import wait_until


def router_on(tmp_path, endpoints: list[str]) -> RouterProcess:
    directory = tmp_path / "router"
    directory.mkdir()
    (directory / "admin.token").write_text(TOKEN + "\n")
    return RouterProcess(directory, {
        "admin": {"token_file": "admin.token"},
        "control": {"etcd": {"endpoints": endpoints, "prefix": PREFIX, "timeout": 1, "max_backoff": 0.5}}})


@pytest.fixture
def started():
    routers: list[RouterProcess] = []
    yield routers
    for r in routers:
        r.stop()


@pytest.fixture
def relayed(tmp_path, etcd, backends, started):
    """A router reading etcd through an EtcdRelay, acme pinned to eu-1: (router, relay)."""
    eu1, eu2 = backends("eu-1", "eu-2")
    seed(etcd, eu1, eu2, {"acme": "eu-1"})
    relay = EtcdRelay(etcd)
    router = router_on(tmp_path, [relay.url])
    started.append(router)
    yield router.start(), relay
    relay.close()


def test_an_admin_push_racing_another_write_answers_409_and_writes_nothing(etcd, relayed):
    router, relay = relayed
    served = revision(router)
    # The router's watch is held up: another writer's change reaches etcd, not it.
    relay.hold_watches()
    other = etcd.put(f"{PREFIX}/tenants/acme", '"eu-2"')
    assert other > served and revision(router) == served
    status, body = put_json(router, "/tenants/globex", "eu-2")
    assert status == 409, body
    assert f"etcd changed since revision {served}" in body["error"]
    assert etcd.get(f"{PREFIX}/tenants/globex") is None          # nothing written
    assert etcd.revision() == other
    assert route(router, "acme") == "eu-1" and route(router, "globex") is None

    relay.release()
    wait_until(lambda: revision(router) >= other, 15, message="the other write, once the watch goes on")
    assert route(router, "acme") == "eu-2"
    status, body = put_json(router, "/tenants/globex", "eu-2")   # in step again: the retry holds
    assert status == 200, body
    assert json.loads(etcd.get(f"{PREFIX}/tenants/globex")) == "eu-2"


def test_a_restart_serves_the_last_known_good_while_etcd_is_read(etcd, relayed):
    router, relay = relayed
    assert route(router, "acme") == "eu-1"
    router.stop()                               # its last known good: acme on eu-1
    moved = etcd.put(f"{PREFIX}/tenants/acme", '"eu-2"')

    # etcd answers nothing for now: a first read as slow as a million pins' (30 s).
    relay.hold_all()
    router.start()
    info = router.admin_json("/config")
    assert info["lkg"] is True and info["etcd"]["state"] == "connecting"
    status, headers, _ = router.request(headers={"X-Tenant-ID": "acme"})
    assert status == 200 and headers["x-stamp"] == "eu-1"
    assert "serving the last known good config" in router.stderr() and "while etcd is read" in router.stderr()

    relay.release()                             # the first read completes, and is served
    wait_until(lambda: revision(router) >= moved, 20, message="etcd's content after the first read")
    assert route(router, "acme") == "eu-2" and router.admin_json("/config")["lkg"] is False
    assert router.metric("stamp_router_etcd_reads_total", reason="start") == 1
    assert router.metric("stamp_router_config_lkg_in_use") == 0


def test_the_leader_killed_while_pins_are_written_costs_no_change(tmp_path, backends, started):
    need_etcd()
    cluster = EtcdCluster(tmp_path / "etcd").start()
    try:
        leader = cluster.leader()
        followers = [m for m in cluster.members if m is not leader]
        eu1, eu2 = backends("eu-1", "eu-2")
        seed(leader, eu1, eu2, {f"t{i}": "eu-1" for i in range(20)})
        # The leader first: the router's watch and reads go to the member that dies.
        router = router_on(tmp_path, [leader.url] + [m.url for m in followers]).start()
        started.append(router)
        assert router.admin_json("/config")["etcd"]["state"] == "synced"

        attempts = []
        written = threading.Event()

        def writer() -> None:
            # Bounded: 300 puts through a follower, each retried for up to 20 s while the
            # cluster elects (a put that failed may still have been applied: the check
            # below compares with what etcd holds, not with what was sent).
            for n in range(300):
                give_up = time.monotonic() + 20
                while time.monotonic() < give_up:
                    try:
                        followers[0].put(f"{PREFIX}/tenants/t{n % 20}", json.dumps("eu-2" if n % 2 else "eu-1"))
                        break
                    except (AssertionError, OSError):
                        time.sleep(0.1)      # polling interval while the cluster elects
                attempts.append(n)
                if n == 100:
                    written.set()
            written.set()

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        assert written.wait(60)
        leader.kill()
        thread.join(300)
        assert not thread.is_alive() and len(attempts) == 300
        new_leader = cluster.leader()
        assert new_leader is not leader

        final = followers[0].revision()
        wait_until(lambda: revision(router) >= final, 30, message="caught up after the leader change")
        assert revision(router) == final
        for i in range(20):
            assert route(router, f"t{i}") == json.loads(followers[0].get(f"{PREFIX}/tenants/t{i}")), i
        info = router.admin_json("/config")["etcd"]
        assert info["state"] == "synced" and info["connected"]
        # The watch on the dead member broke: the router read everything again at one
        # revision, then followed from the next (no change applied twice or skipped).
        assert router.metric("stamp_router_etcd_reads_total", reason="reconnect") >= 1
        assert router.metric("stamp_router_etcd_pin_events_total") <= 300
        followers[1].put(f"{PREFIX}/tenants/after", '"eu-2"')
        wait_until(lambda: route(router, "after") == "eu-2", 15, message="following the new leader's writes")
    finally:
        cluster.stop()


def test_a_member_cut_off_from_its_cluster_is_left_for_one_that_has_a_leader(tmp_path, backends, started):
    need_etcd()
    cluster = EtcdCluster(tmp_path / "etcd", partitionable=True).start()
    try:
        leader = cluster.leader()
        cut, other = [m for m in cluster.members if m is not leader]
        eu1, eu2 = backends("eu-1", "eu-2")
        seed(leader, eu1, eu2, {"acme": "eu-1"})
        # The router watches the member that will be cut off.
        router = router_on(tmp_path, [cut.url, leader.url, other.url]).start()
        started.append(router)
        assert route(router, "acme") == "eu-1"

        cluster.isolate(cut)
        # The majority goes on: a pin put there never reaches the isolated member, whose
        # watch stays open and silent. The router must notice and read elsewhere.
        rev = other.put(f"{PREFIX}/tenants/acme", '"eu-2"')
        wait_until(lambda: route(router, "acme") == "eu-2" and revision(router) >= rev, 30,
                   message="the pin put on the majority side, served")
        assert router.metric("stamp_router_etcd_reads_total", reason="reconnect") >= 1
        after = leader.put(f"{PREFIX}/tenants/globex", '"eu-1"')
        wait_until(lambda: revision(router) >= after, 15, message="following the majority")
        assert route(router, "globex") == "eu-1"

        cluster.isolate(None)                 # healed: the member catches up; nothing changes
        wait_until(lambda: cut.get(f"{PREFIX}/tenants/globex") is not None, 30, message="the member caught up")
        assert route(router, "acme") == "eu-2" and revision(router) >= after
    finally:
        cluster.stop()
