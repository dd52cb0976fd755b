"""A control.state_dir that cannot hold the last known good: `serve` says so in one line,
with no traceback, and serves (docs/control-plane.md, "The state directory")."""

from __future__ import annotations

import os

import pytest

from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import free_port, wait_until


def _router(tmp_path, state_dir: str) -> RouterProcess:
    doc = {"routing": {"sources": ["header"]}, "control": {"state_dir": state_dir},
           "stamps": [stamp("eu-1", [f"127.0.0.1:{free_port()}"], health={"enabled": False})]}
    return RouterProcess(tmp_path, doc)


@pytest.mark.parametrize("shape", ["a file", "under a file", "a dangling symlink"])
def test_an_unusable_state_dir_is_one_clear_line_and_the_router_serves(tmp_path, shape):
    if shape == "a file":
        (tmp_path / "st").write_text("")
        state_dir = tmp_path / "st"
    elif shape == "under a file":
        (tmp_path / "f").write_text("")
        state_dir = tmp_path / "f" / "st"
    else:
        os.symlink(tmp_path / "nowhere" / "st", tmp_path / "st")
        state_dir = tmp_path / "st"
    router = _router(tmp_path, str(state_dir)).start()
    try:
        # a change is accepted and served although it cannot be kept
        status, _, body = router.admin("GET", "/route?tenant=acme")
        assert status == 200, body
        router.write_config({**router.doc, "version": "v2"})
        wait_until(lambda: router.admin_json("/config").get("version") == "v2", 20, message="v2 served")
    finally:
        assert router.stop() == 0
    err = router.stderr()
    assert "Traceback" not in err
    # One line about the state directory, whatever else a start on this machine warns of
    # (the open-file limit, say).
    lines = [line for line in err.splitlines() if (" WARNING " in line or " ERROR " in line) and "state_dir" in line]
    assert len(lines) == 1, err
    assert lines[0].endswith(f"control.state_dir {state_dir} is not a directory (a file, or a path through one, "
                             "is in the way): the last known good config is not kept")
