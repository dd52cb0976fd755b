"""A real etcd (Debian's etcd-server) on loopback ports, for the tests that need one."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_until


class EtcdServer:
    """One single-member etcd. `kill` and `start` again keep its data directory, so a
    restart keeps revisions and keys, as a real etcd restart does."""

    def __init__(self, directory: Path, name: str = "test", tls: dict[str, str] | None = None) -> None:
        self.dir = directory
        self.name = name
        self.port, self.peer_port = free_port(), free_port()
        # tls: {"ca", "cert", "key"} paths; clients then need a certificate of that CA.
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> EtcdServer:
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--name", self.name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"{self.name}={peer}", "--log-level", "warn",
             # Keeps a test's fsyncs off a shared disk's queue; durability is not under test.
             "--unsafe-no-fsync",
             *(["--cert-file", self.tls["cert"], "--key-file", self.tls["key"], "--client-cert-auth",
                "--trusted-ca-file", self.tls["ca"]] if self.tls else [])],
            stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.healthy, timeout, interval=0.05, message=f"etcd on {self.url} (log: {self.dir / 'etcd.log'})")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"etcd exited with {self.proc.returncode}: {self.log()[-2000:]}")
        if self.tls:
            return _port_open(self.port)
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def log(self) -> str:
        path = self.dir / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    # -- a tiny synchronous client for test set-up ------------------------------------
    def call(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"etcd {path}: {exc.code} {exc.read()[:300]!r}") from None

    def put(self, key: str, value: str | bytes) -> int:
        value = value.encode() if isinstance(value, str) else value
        return int(self.call("/v3/kv/put", {"key": _b64(key), "value": base64.b64encode(value).decode()})
                   ["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def get(self, key: str) -> bytes | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs")
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": _b64("\0"), "count_only": True})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def need_etcd() -> None:
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")


@pytest.fixture
def etcd(tmp_path_factory):
    need_etcd()
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    yield server
    server.kill()
