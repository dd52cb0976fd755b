"""`stamp-router demo` (what `make run` runs): three stamps with SQLite behind the router."""

import http.client
import json
import signal
import subprocess
import sys

from tests.support.servers import free_port, wait_until


def get(port, path="/", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_demo_routes_tenants_to_their_stamps_and_stops_cleanly(tmp_path):
    port, admin, base = free_port(), free_port(), free_port()
    while base + 2 in (port, admin) or base + 1 in (port, admin):
        base = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "router", "demo", "--port", str(port), "--admin-port", str(admin),
                             "--base-port", str(base), "--data-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def ready():
            try:
                return get(admin, "/readyz")[0] == 200
            except OSError:
                assert proc.poll() is None, proc.communicate()
                return False
        wait_until(ready, 30, message="demo ready")
        status, body = get(port, "/", {"X-Tenant-ID": "acme"})
        assert status == 200 and body["stamp"] == "eu-1" and body["tenant"] == "acme"
        first = body["visits"]
        assert get(port, "/", {"X-Tenant-ID": "acme"})[1]["visits"] == first + 1, "per-tenant counter in SQLite"
        status, body = get(port, "/", {"Host": f"globex.localhost:{port}"})
        assert body["stamp"] == "us-1" and body["tenant"] == "globex"
        assert (tmp_path / "eu-1.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"curl -s -H 'X-Tenant-ID: acme' http://127.0.0.1:{port}/" in out
