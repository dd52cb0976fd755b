"""`stamp-router demo` (what `make run` runs): three stamps with SQLite behind the router."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys

from tests.support.servers import free_port, wait_until


def free_run(n: int) -> int:
    """A first port such that it and the next n-1 ports are all free."""
    for _ in range(100):
        base = free_port()
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no run of free ports")


def get(port, path="/", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_demo_routes_tenants_to_their_stamps_logs_each_request_and_removes_its_directory(tmp_path):
    base = free_run(3)
    port, admin = free_port(), free_port()
    while port in range(base, base + 3) or admin in range(base, base + 3):
        port, admin = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "router", "demo", "--port", str(port), "--admin-port", str(admin),
                             "--base-port", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        def ready():
            try:
                return get(admin, "/readyz")[0] == 200
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"demo exited {proc.returncode}: {proc.communicate()}")
                return False
        wait_until(ready, 30, message="demo ready")
        status, body = get(port, "/", {"X-Tenant-ID": "acme"})
        assert status == 200 and body["stamp"] == "eu-1" and body["tenant"] == "acme"
        first = body["visits"]
        assert get(port, "/", {"X-Tenant-ID": "acme"})[1]["visits"] == first + 1, "per-tenant counter in SQLite"
        status, body = get(port, "/", {"Host": f"globex.localhost:{port}"})
        assert body["stamp"] == "us-1" and body["tenant"] == "globex"
        [data_dir] = tmp_path.glob("stamp-router-demo-*")
        assert (data_dir / "eu-1.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"curl -s -H 'X-Tenant-ID: acme' http://127.0.0.1:{port}/" in out
    access = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # One line per request; each worker writes its own lines, so two requests served by
    # different workers may log in either order.
    assert sorted((a["tenant"], a["stamp"], a["status"]) for a in access) == [
        ("acme", "eu-1", 200), ("acme", "eu-1", 200), ("globex", "us-1", 200)]
    assert all(a["client"] == "127.0.0.1" and a["time"] > 0 and a["duration"] >= 0 for a in access)
    assert list(tmp_path.glob("stamp-router-demo-*")) == [], "the demo's temporary directory is removed"
