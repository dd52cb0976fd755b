"""Start whatever happened to the local config file (issue: static stability at start).

With a last known good (LKG) in the state directory the router starts and serves it,
flagged in /readyz, in stamp_router_config_lkg_in_use and in its log; without one it
exits 1 with the reason. Each case damages the file of a router that ran once."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.faults.support import copy_of, pinned_doc, ready_checks, serves_acme
from tests.support.router_proc import RouterProcess
from tests.support.servers import wait_until


def missing(path):
    path.unlink()


def unreadable(path):
    # Root reads a mode-000 file: a directory where the file should be cannot be read by anyone.
    path.unlink()
    path.mkdir()


def empty(path):
    path.write_bytes(b"")


def torn(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_toml(path):
    path.write_bytes(b"\x00\xff[stamps\n = = =\n")


def invalid_config(path):
    path.write_text('[[stamps]]\nname = "eu-1"\nregion = "eu"\n')


def dangling_symlink(path):
    path.unlink()
    path.symlink_to(path.parent / "nowhere" / "router.toml")


DAMAGES = [missing, unreadable, empty, torn, not_toml, invalid_config, dangling_symlink]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_a_damaged_file_with_an_lkg_starts_from_the_lkg_flagged(tmp_path, ran_once, damage):
    proc = copy_of(ran_once, tmp_path)
    damage(proc.config_path)
    try:
        proc.start(timeout=30)
        assert serves_acme(proc)
        ready = ready_checks(proc)
        assert ready["status"] == 200 and ready["checks"]["config"]["lkg"] is True, ready
        assert proc.metric("stamp_router_config_lkg_in_use") == 1
        assert "starting from the last known good config" in proc.stderr()
    finally:
        proc.stop()


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_a_damaged_file_without_an_lkg_exits_1_with_the_reason(tmp_path, backends, damage):
    (backend,) = backends("eu-1")
    proc = RouterProcess(tmp_path, pinned_doc(backend.address))
    damage(proc.config_path)
    proc.start(wait_ready=False)
    assert proc.proc.wait(30) == 1
    err = proc.stderr()
    if damage is invalid_config:
        assert "stamps[0].backends" in err
    else:
        assert "no last known good config in " + str(tmp_path / "state") in err, err


def test_a_repaired_file_is_served_again_and_the_flag_drops(tmp_path, ran_once):
    proc = copy_of(ran_once, tmp_path)
    good = proc.config_path.read_bytes()
    missing(proc.config_path)
    try:
        proc.start(timeout=30)
        assert proc.metric("stamp_router_config_lkg_in_use") == 1
        tmp = proc.config_path.with_suffix(".new")
        tmp.write_bytes(good.replace(b'"acme" = "eu-1"', b'"acme" = "eu-1"\n"newco" = "eu-1"'))
        os.replace(tmp, proc.config_path)
        wait_until(lambda: proc.metric("stamp_router_config_lkg_in_use") == 0, 20, message="the repaired file served")
        status, headers, _ = proc.request(headers={"X-Tenant-ID": "newco"})
        assert (status, headers.get("x-stamp")) == (200, "eu-1")
    finally:
        proc.stop()


@pytest.mark.parametrize("how", ["flag", "env", "neither"])
def test_a_state_dir_elsewhere_is_found_by_flag_or_env(tmp_path, ran_once, how):
    proc = copy_of(ran_once, tmp_path)
    elsewhere = tmp_path / "var" / "lib" / "stamp-router"
    elsewhere.parent.mkdir(parents=True)
    (tmp_path / "state").rename(elsewhere)
    missing(proc.config_path)
    if how == "flag":
        proc.args = ["--state-dir", str(elsewhere)]
    elif how == "env":
        proc.env["STAMP_ROUTER_STATE_DIR"] = str(elsewhere)
    try:
        if how == "neither":
            proc.start(wait_ready=False)
            assert proc.proc.wait(30) == 1
            assert "set --state-dir or STAMP_ROUTER_STATE_DIR" in proc.stderr()
        else:
            proc.start(timeout=30)
            assert serves_acme(proc)
            assert str(elsewhere) in proc.stderr()
    finally:
        proc.stop()


def test_the_flag_overrides_control_state_dir_of_a_good_file(tmp_path, backends):
    (backend,) = backends("eu-1")
    proc = RouterProcess(tmp_path, pinned_doc(backend.address))
    proc.args = ["--state-dir", str(tmp_path / "flagged")]
    proc.start()
    try:
        wait_until(lambda: (tmp_path / "flagged" / "lkg.json").exists(), 10, message="lkg.json under --state-dir")
        assert not (tmp_path / "state").exists()
    finally:
        proc.stop()
    shutil.rmtree(tmp_path / "flagged")
