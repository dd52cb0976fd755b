"""`stamp-router migrate` across three routers (real processes), under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.moves.support import Traffic, router_doc, tenant_info
from tests.moves.test_move import assert_no_split, wait_for_traffic
from tests.support.router_proc import RouterProcess
from tests.support.servers import wait_until


@pytest.fixture
def fleet(tmp_path, stamps):
    routers = []
    for i in range(3):
        home = tmp_path / f"r{i}"
        home.mkdir()
        doc = router_doc(stamps, home, timeouts={"drain": 1.0})
        del doc["migration"]["hook_url"]          # the hook is migrate's to call, once
        routers.append(RouterProcess(home, doc))
    for r in routers:
        r.start()
    yield routers
    for r in routers:
        r.stop()


def migrate(routers, stamps, *extra, timeout="20s"):
    token_file = routers[0].tmp_path / "token"
    return subprocess.Popen(
        [sys.executable, "-m", "router", "migrate", "acme", "--to", "new", "--timeout", timeout,
         "--token-file", str(token_file), "--hook-url", stamps.hook_url,
         "--routers", *[f"http://127.0.0.1:{r.admin_port}" for r in routers], *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_fleet_move_under_load_fails_nothing_and_splits_no_write(fleet, stamps):
    stamps.hook.delay = 0.3
    loads = [Traffic(r.port, "acme", clients=2, max_requests=2000) for r in fleet]
    for load in loads:
        load.__enter__()
    try:
        wait_for_traffic(loads[0], stamps, "old", at_least=30)
        proc = migrate(fleet, stamps)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        wait_for_traffic(loads[0], stamps, "new", at_least=30)
    finally:
        for load in loads:
            load.stop()
    body = json.loads(out)
    assert body["outcome"] == "completed" and len(body["routers"]["flipped"]) == 3
    assert [load.failed() for load in loads] == [[], [], []]
    assert_no_split(stamps, "acme")
    assert len(stamps.hook.calls) == 1                         # the hook ran once for the fleet
    assert {tenant_info(r, "acme")["pin"]["stamp"] for r in fleet} == {"new"}


def test_a_router_killed_mid_move_ends_rolled_back_or_completed_never_split(fleet, stamps):
    """Which of the two depends on whether the killed router is back (paused, from its last
    known good) by the time the flip is asked; either way nothing is split or lost."""
    stamps.hook.delay = 1.0
    victim = fleet[2]
    loads = [Traffic(r.port, "acme", clients=2, max_requests=2000) for r in fleet[:2]]
    for load in loads:
        load.__enter__()
    try:
        wait_for_traffic(loads[0], stamps, "old", at_least=30)
        proc = migrate(fleet, stamps)
        # Killed while the hook runs: after the pause, before the flip.
        wait_until(lambda: stamps.hook.calls, 20, message="the hook to be called")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        restarted = threading.Thread(target=lambda: victim.start(timeout=30))
        restarted.start()          # it comes back from its last known good: the paused pin
        out, err = proc.communicate(timeout=90)
        restarted.join(60)
    finally:
        for load in loads:
            load.stop()
    body = json.loads(out)
    assert [load.failed() for load in loads] == [[], []]
    if body["outcome"] == "completed":
        # The killed router was back, from its last known good, still holding the paused
        # pin before the flip was asked: every router flipped, and no write was split.
        assert proc.returncode == 0 and len(body["routers"]["flipped"]) == 3, err.decode()
        assert [tenant_info(r, "acme")["pin"]["stamp"] for r in fleet] == ["new"] * 3
        assert_no_split(stamps, "acme")
        return
    assert proc.returncode == 1 and body["outcome"] == "rolled_back", err.decode()
    assert body["routers"]["flipped"] == []
    assert "no longer holds the paused pin" in body["error"] or "ClientConnectorError" in body["error"] \
        or "answered" in body["error"], body["error"]
    # Every router, the one killed included, is back on the old pin; nothing reached the new stamp.
    assert [tenant_info(r, "acme")["pin"] for r in fleet] == [{"stamp": "old", "mode": "read-write"}] * 3
    assert [a for a in stamps.arrivals if a.stamp == "new"] == []


def test_a_flip_one_router_missed_goes_forward_not_back(fleet, stamps):
    """Router 2 answers reads but refuses the flip (its admin token changed while the hook
    ran): the two that flipped are not rolled back; the flip is asked again until router 2
    takes it, and meanwhile its clients are held, not sent to the old stamp."""
    stamps.hook.delay = 1.0
    loads = [Traffic(r.port, "acme", clients=2, max_requests=2000) for r in fleet]
    for load in loads:
        load.__enter__()
    token = fleet[2].tmp_path / "token"
    try:
        wait_for_traffic(loads[0], stamps, "old", at_least=30)
        proc = migrate(fleet, stamps, timeout="30s")
        wait_until(lambda: stamps.hook.calls, 20, message="the hook to be called")
        token.write_text("another-token")
        wait_until(lambda: tenant_info(fleet[0], "acme")["pin"]["stamp"] == "new", 20, message="router 0 flipped")
        assert tenant_info(fleet[2], "acme")["pin"] == {"stamp": "old", "mode": "paused"}
        token.write_text("move-test-token")
        out, err = proc.communicate(timeout=60)
        wait_for_traffic(loads[2], stamps, "new", at_least=30)
    finally:
        for load in loads:
            load.stop()
    body = json.loads(out)
    assert proc.returncode == 0 and body["outcome"] == "completed", err.decode()
    assert [s["result"] for s in body["steps"] if s["step"] == "flip"][0] == "partial"
    assert len(body["routers"]["flipped"]) == 3 and body["routers"]["rolled_back"] == []
    assert [load.failed() for load in loads] == [[], [], []]
    assert_no_split(stamps, "acme")
