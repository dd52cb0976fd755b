"""`serve --takeover`: a new router takes the listening sockets of the running one,
which drains once the new one serves. Real processes, loopback only."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from tests.process.support import Load, pid_alive
from tests.support.router_proc import stamp
from tests.support.servers import wait_until

TOKEN = "s3cret-token"


@pytest.fixture
def doc(backends, tmp_path):
    eu1, eu2 = backends("eu-1", "eu-2")
    (tmp_path / "token").write_text(TOKEN)
    return {"routing": {"sources": ["header"]}, "admin": {"token_file": str(tmp_path / "token")},
            "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
            "tenants": {"acme": "eu-1"}, "process": {"workers": 2}}


class Successor:
    """A second `serve --takeover` on the same config file (so the same ports and state)."""

    def __init__(self, router) -> None:
        self.stderr_path = router.tmp_path / "successor.stderr"
        self.proc = subprocess.Popen([sys.executable, "-m", "router", "serve", "-c", str(router.config_path),
                                      "--takeover"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "wb"), env=router.env)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def successors():
    started: list[Successor] = []

    def make(router) -> Successor:
        started.append(Successor(router))
        return started[-1]

    yield make
    for s in started:
        s.stop()


def test_a_takeover_under_load_refuses_nothing_and_keeps_pushed_pins(router_proc, doc, successors):
    router = router_proc(doc)
    old_workers = [w["pid"] for w in json.loads(router.admin("GET", "/readyz")[2])["checks"]["workers"]["workers"]]
    status, _, body = router.admin("PUT", "/tenants/acme", body=b"eu-2", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    # No retries: a keep-alive connection of the old router that the client sends on
    # during the drain is answered (with Connection: close), not closed under it.
    with Load(router.port, {"X-Tenant-ID": "acme"}, clients=6) as keep_alive, \
            Load(router.port, {"X-Tenant-ID": "acme"}, clients=2, fresh_connections=True) as fresh:
        wait_until(lambda: keep_alive.ok >= 200 and fresh.ok >= 50, 30, message="load running")
        new = successors(router)
        router.proc.wait(60)                              # the old one drains and exits
        assert router.proc.returncode == 0, router.stderr()
        before = keep_alive.ok + fresh.ok
        wait_until(lambda: keep_alive.ok + fresh.ok >= before + 200, 30, message="load served by the new router")
    assert keep_alive.failures == [] and fresh.failures == []
    assert keep_alive.refused == 0 and fresh.refused == 0
    assert not any(pid_alive(p) for p in old_workers)
    assert new.proc.poll() is None
    # The pin pushed to the old router is served by the new one, which says it is a local edit.
    status, headers, _ = router.request(headers={"X-Tenant-ID": "acme"})
    assert (status, headers["x-stamp"]) == (200, "eu-2")
    assert router.admin_json("/config")["local_edits"] == 1
    assert "took over 2 proxy (1 per worker slot) and 1 admin listening socket(s)" in new.stderr()


def test_a_takeover_with_no_running_router_is_a_clear_error(router_proc, doc):
    router = router_proc(doc, start=False)
    out = subprocess.run([sys.executable, "-m", "router", "serve", "-c", str(router.config_path), "--takeover"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot take over: no running router to take over: nothing answers on" in out.stderr
    assert "takeover.sock" in out.stderr


def takeover_client(router, hello: bytes) -> socket.socket:
    """A connection to the router's takeover socket that has said `hello`."""
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(10)
    conn.connect(str(router.tmp_path / "state" / "takeover.sock"))
    conn.sendall(hello + b"\n")
    return conn


def test_an_incompatible_takeover_is_refused_and_the_old_router_serves_on(router_proc, doc):
    router = router_proc(doc)
    with takeover_client(router, b'{"hello": 999, "version": "9.9.9"}') as conn:
        answer = json.loads(conn.recv(65536).split(b"\n")[0])
    assert answer["ok"] is False and "incompatible versions" in answer["error"]
    assert router.proc.poll() is None
    assert router.request(headers={"X-Tenant-ID": "acme"})[0] == 200
    status, _, _ = router.admin("PUT", "/tenants/acme", body=b"eu-2", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200                                     # still taking changes
    assert "takeover by version 9.9.9 refused" in router.stderr()


def test_a_successor_of_another_takeover_protocol_exits_1_and_the_old_router_serves_on(router_proc, doc):
    # A real `serve --takeover` whose takeover protocol is another number, as a release
    # that changed what is handed over would be.
    router = router_proc(doc)
    code = ("import sys, router.process.takeover as t; t.PROTOCOL = 99; from router.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "serve", "-c", str(router.config_path), "--takeover"],
                         capture_output=True, text=True, timeout=60, env=router.env)
    assert out.returncode == 1
    assert "cannot take over: the running router refused the takeover: incompatible versions" in out.stderr
    assert router.proc.poll() is None
    assert router.request(headers={"X-Tenant-ID": "acme"})[0] == 200
    status, _, _ = router.admin("PUT", "/tenants/acme", body=b"eu-2", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200                                     # still taking changes


def test_a_successor_that_goes_away_leaves_the_old_router_in_charge(router_proc, doc):
    router = router_proc(doc)
    with takeover_client(router, b'{"hello": 1, "version": "test"}') as conn:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 16)
        for fd in fds:
            socket.socket(fileno=fd).close()
        assert json.loads(data.split(b"\n")[0])["ok"] is True
        # Handing over: the old router takes no changes now.
        status, headers, _ = router.admin("PUT", "/tenants/acme", body=b"eu-2",
                                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 503 and headers["Retry-After"] == "1"
    # The successor went away without saying drain: changes are taken again.
    wait_until(lambda: router.admin("PUT", "/tenants/acme", body=b"eu-2",
                                    headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200, 20,
               message="the old router taking changes again")
    assert router.request(headers={"X-Tenant-ID": "acme"})[1]["x-stamp"] == "eu-2"
    assert router.proc.poll() is None
