"""Shared pieces of the fault suite: a router with one tenant pinned to a live backend,
run once per module and copied for each test (a router start is the slow part)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess

import pytest

from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import wait_until

TOKEN = "faults-admin-token-7d2e"


def pinned_doc(backend_address: str, **extra) -> dict:
    """One stamp on a live backend, `acme` pinned to it, header routing, an admin token,
    and the state directory named relative to the config file (so a copy is whole)."""
    return {"routing": {"sources": ["header"]},
            "stamps": [stamp("eu-1", [backend_address]), stamp("eu-2", ["127.0.0.1:9"])],
            "tenants": {"acme": "eu-1"}, "admin": {"token_file": "token"}, "control": {"state_dir": "state"},
            **extra}


def run_once(tmp_path, backend, **kwargs) -> RouterProcess:
    """A router that served `pinned_doc` and stopped, leaving its LKG in tmp_path/state."""
    (tmp_path / "token").write_text(TOKEN)
    proc = RouterProcess(tmp_path, pinned_doc(backend.address), **kwargs).start()
    assert serves_acme(proc)
    wait_until(lambda: (tmp_path / "state" / "lkg.json").exists(), 10, message="lkg.json written")
    assert proc.stop() == 0
    return proc


def copy_of(ran: RouterProcess, tmp_path) -> RouterProcess:
    """A router on a copy of `ran`'s directory (config, token, state), on the same ports:
    the LKG names them, and a router started from it without its file listens there."""
    shutil.copytree(ran.tmp_path, tmp_path, dirs_exist_ok=True)
    proc = RouterProcess(tmp_path, ran.doc, port=ran.port)
    proc.admin_port, proc.doc = ran.admin_port, ran.doc
    proc.write_config(ran.doc)
    return proc


def serves_acme(proc: RouterProcess) -> bool:
    status, headers, _ = proc.request(headers={"X-Tenant-ID": "acme"})
    return status == 200 and headers.get("x-stamp") == "eu-1"


def ready_checks(proc: RouterProcess) -> dict:
    status, _, data = proc.admin("GET", "/readyz")
    return {"status": status, **json.loads(data)}


def push_pin(proc: RouterProcess, tenant: str, stamp_name: str) -> tuple[int, dict]:
    status, _, data = proc.admin("PUT", f"/tenants/{tenant}", json.dumps({"stamp": stamp_name}).encode(),
                                 {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    return status, json.loads(data)


def pinned(proc: RouterProcess, tenant: str) -> str | None:
    """The stamp `tenant` is pinned to in the config being served, or None."""
    route = proc.admin_json(f"/route?tenant={tenant}")
    return route.get("stamp") if route.get("reason") == "pinned" else None


@contextlib.contextmanager
def tmpfs(path, size: str, *, read_only: bool = False):
    """A small tmpfs mounted at `path` (existing content copied in), or a skip saying why."""
    saved = path.with_name(path.name + ".before")
    if path.exists():
        path.rename(saved)
    path.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({got.stderr.strip()}): needs root or CAP_SYS_ADMIN")
    try:
        if saved.exists():
            shutil.copytree(saved, path, dirs_exist_ok=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
