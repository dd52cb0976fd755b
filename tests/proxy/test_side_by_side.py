"""Routers side by side on one host: `listen.reuse_port` lets them share the proxy port
(one per core, or a replacement started before the old one drains), and each holds its
`control.state_dir`, so two never write one."""

from __future__ import annotations

import signal

import pytest

from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import free_port, wait_until

TENANT = {"X-Tenant-ID": "acme"}


@pytest.fixture
def side_by_side(tmp_path, backends):
    """Factory: routers in directories of their own (config, logs, state_dir) on one port."""
    (eu1,) = backends("eu-1")
    port = free_port()
    made: list[RouterProcess] = []

    def make(*, reuse_port: bool = True, state_dir: str | None = None) -> RouterProcess:
        home = tmp_path / f"router-{len(made)}"
        home.mkdir()
        doc = {"listen": {"reuse_port": reuse_port}, "routing": {"sources": ["header"]},
               "stamps": [stamp("eu-1", [eu1.address])], "tenants": {"acme": "eu-1"}}
        if state_dir is not None:
            doc["control"] = {"state_dir": state_dir}
        router = RouterProcess(home, doc, port=port)
        made.append(router)
        return router

    make.procs = made              # for the failure report (tests/conftest.py)
    yield make
    for router in made:
        router.stop()


def served(router: RouterProcess) -> float:
    return router.metric("stamp_router_requests_total", stamp="eu-1", code="2xx")


def test_two_routers_share_the_port_and_one_serves_alone_once_the_other_stops(side_by_side):
    a, b = side_by_side().start(), side_by_side().start()
    assert a.port == b.port
    # A connection each: the kernel spreads new connections over the two listeners.
    for _ in range(100):
        assert a.request("GET", "/x", headers=TENANT)[0] == 200
    assert served(a) > 0 and served(b) > 0
    assert served(a) + served(b) == 100

    assert a.stop() == 0
    before = served(b)
    for _ in range(50):
        assert b.request("GET", "/y", headers=TENANT)[0] == 200
    assert served(b) == before + 50


def test_without_reuse_port_a_second_router_on_the_port_does_not_start(side_by_side):
    a = side_by_side(reuse_port=False).start()
    b = side_by_side(reuse_port=False).start(wait_ready=False)
    assert b.proc.wait(20) == 1
    assert "cannot start" in b.stderr() and "address already in use" in b.stderr().lower()
    assert a.request("GET", "/x", headers=TENANT)[0] == 200


def test_a_second_router_on_a_held_state_dir_does_not_start_and_a_dead_ones_is_free(tmp_path, side_by_side):
    a = side_by_side().start()
    state = a.doc["control"]["state_dir"]
    lkg = tmp_path / "router-0" / "state" / "lkg.json"
    wait_until(lkg.exists, message="the first router to save its config")   # renamed into place whole
    saved = lkg.read_bytes()

    b = side_by_side(state_dir=state).start(wait_ready=False)
    assert b.proc.wait(20) == 1
    assert f"control.state_dir: {state} is in use by another stamp-router process (pid {a.proc.pid})" in b.stderr()
    assert lkg.read_bytes() == saved
    assert a.request("GET", "/x", headers=TENANT)[0] == 200

    # The lock dies with its process: a router killed outright leaves no stale lock behind.
    a.stop(signal.SIGKILL)
    c = side_by_side(state_dir=state).start()
    assert c.request("GET", "/x", headers=TENANT)[0] == 200
    assert "in use" not in c.stderr()
