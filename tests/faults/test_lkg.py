"""The last known good itself under faults: a crash at every step of a write, a full
disk, a read-only state directory, a damaged lkg.json or journal. The router never starts
from a half-written state, never loses a pin push it answered as persisted, and says
what it did.

Crashes are SIGKILLs the router sends itself at a named step of a write
(STAMP_ROUTER_TEST_LKG_STOP, a test-only hook in router/control/lkg.py). A killed process
leaves its writes in the page cache, so these cases test the order of the steps, not
what a power cut does to an unsynced page."""

from __future__ import annotations

import http.client
import json
import os
import signal

import pytest

from router.control.lkg import APPEND_STEPS, SAVE_STEPS, TEST_STOP_ENV
from tests.faults.support import copy_of, pinned, push_pin, serves_acme, tmpfs
from tests.support.servers import wait_until


def with_newco(proc) -> dict:
    """A changed config: `newco` pinned too."""
    doc = {**proc.doc, "tenants": {**proc.doc["tenants"], "newco": "eu-1"}}
    proc.doc = doc
    proc.write_config(doc)
    return doc


def killed(proc, timeout: float = 30) -> None:
    assert proc.proc.wait(timeout) == -signal.SIGKILL, proc.stderr()


def persisted_push(proc, tenant: str) -> None:
    status, answer = push_pin(proc, tenant, "eu-1")
    assert (status, answer["persisted"]) == (200, True), answer


def kill_9_and_restart_without_file(proc) -> None:
    proc.proc.send_signal(signal.SIGKILL)
    killed(proc)
    restart_without_file(proc)


def restart_without_file(proc) -> None:
    proc.env.pop(TEST_STOP_ENV, None)
    proc.config_path.unlink()
    proc.start(timeout=30)
    assert serves_acme(proc)
    assert "cannot be used: " not in proc.stderr().split("starting from")[0], proc.stderr()


@pytest.mark.parametrize("step", SAVE_STEPS)
def test_a_crash_at_each_step_of_a_save_leaves_the_old_lkg_or_the_new_one(tmp_path, ran_once, step):
    proc = copy_of(ran_once, tmp_path)
    with_newco(proc)
    proc.env[TEST_STOP_ENV] = step
    proc.start(wait_ready=False)          # the new config is saved at start: the crash comes then
    killed(proc)
    try:
        restart_without_file(proc)
        renamed = SAVE_STEPS.index(step) >= SAVE_STEPS.index("renamed")
        assert pinned(proc, "newco") == ("eu-1" if renamed else None)
    finally:
        proc.stop()


@pytest.mark.parametrize("step", APPEND_STEPS)
def test_a_crash_at_each_step_of_a_pin_push_keeps_the_journal_whole(tmp_path, ran_once, step):
    proc = copy_of(ran_once, tmp_path)
    proc.env[TEST_STOP_ENV] = step
    proc.start()
    with pytest.raises((http.client.HTTPException, OSError)):
        push_pin(proc, "newco", "eu-1")        # no answer: the process died writing it
    killed(proc)
    try:
        restart_without_file(proc)
        # write() returned before the crash, so the line is whole in the page cache.
        assert pinned(proc, "newco") == "eu-1"
        assert "torn" not in proc.stderr()
    finally:
        proc.stop()


def test_a_push_answered_as_persisted_survives_kill_9(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    proc.start()
    try:
        persisted_push(proc, "newco")
        kill_9_and_restart_without_file(proc)
        assert pinned(proc, "newco") == "eu-1"
    finally:
        proc.stop()


def test_a_torn_journal_tail_is_cut_off_before_the_next_push(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    proc.start()
    persisted_push(proc, "newco")
    assert proc.stop() == 0
    (journal,) = (tmp_path / "state").glob("lkg-*.journal")
    with open(journal, "ab") as fh:
        fh.write(b'{"op":"pin","tenant":"tor')       # a crash mid-append, as a power cut leaves it
    proc.start()
    try:
        persisted_push(proc, "later")
        kill_9_and_restart_without_file(proc)
        assert (pinned(proc, "newco"), pinned(proc, "later")) == ("eu-1", "eu-1")
    finally:
        proc.stop()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_lkg_json_is_reported_and_replaced_from_a_good_file(tmp_path, ran_once, damage):
    proc = copy_of(ran_once, tmp_path)
    lkg = tmp_path / "state" / "lkg.json"
    data = lkg.read_bytes()
    lkg.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 100)
    proc.start()
    try:
        assert serves_acme(proc)
        assert "the last known good config in" in proc.stderr() and "is damaged" in proc.stderr()
        wait_until(lambda: lkg.read_bytes().endswith(b"}\n") and json.loads(lkg.read_bytes()), 10,
                   message="lkg.json rewritten whole")
    finally:
        proc.stop()


def test_a_damaged_lkg_json_and_no_file_exits_1_saying_so(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    lkg = tmp_path / "state" / "lkg.json"
    lkg.write_bytes(lkg.read_bytes()[:100])
    proc.config_path.unlink()
    proc.start(wait_ready=False)
    assert proc.proc.wait(30) == 1
    assert "is damaged" in proc.stderr()


def test_a_full_disk_fails_the_write_counts_it_and_loses_nothing_answered(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    with tmpfs(tmp_path / "state", "64k") as state:
        filler = state / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)      # fill it: the next write gets ENOSPC
        try:
            for _ in range(10_000):
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        with_newco(proc)
        proc.start()
        try:
            assert pinned(proc, "newco") == "eu-1"       # serves the new config all the same
            wait_until(lambda: proc.metric("stamp_router_config_lkg_write_errors_total") >= 1, 10,
                       message="the failed save counted")
            status, answer = push_pin(proc, "full", "eu-1")
            assert (status, answer["persisted"]) == (200, False), answer
            assert not list(state.glob("*.tmp")), "a failed save leaves no temporary file"
            filler.unlink()
            persisted_push(proc, "later")
            kill_9_and_restart_without_file(proc)
            # The push after the failed save was saved whole, not journaled onto the old base.
            assert (pinned(proc, "newco"), pinned(proc, "full"), pinned(proc, "later")) == ("eu-1",) * 3
        finally:
            proc.stop()


def test_a_read_only_state_dir_serves_reports_and_keeps_the_old_lkg(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    with tmpfs(tmp_path / "state", "1m", read_only=True):
        with_newco(proc)
        proc.start()
        try:
            assert pinned(proc, "newco") == "eu-1"
            assert "read-only filesystem" in proc.stderr()
            wait_until(lambda: proc.metric("stamp_router_config_lkg_write_errors_total") >= 1, 10,
                       message="the failed save counted")
            status, answer = push_pin(proc, "other", "eu-1")
            assert (status, answer["persisted"]) == (200, False), answer
            assert proc.stop() == 0
            restart_without_file(proc)
            assert pinned(proc, "newco") is None        # the read-only LKG, as it was
        finally:
            proc.stop()
