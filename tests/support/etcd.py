"""A real etcd (Debian's etcd-server) on loopback ports, for the tests that need one."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.relay import TcpRelay
from tests.support.servers import free_port, wait_until


class EtcdServer:
    """One single-member etcd. `kill` and `start` again keep its data directory, so a
    restart keeps revisions and keys, as a real etcd restart does."""

    def __init__(self, directory: Path, name: str = "test", tls: dict[str, str] | None = None) -> None:
        self.dir = directory
        self.name = name
        self.port, self.peer_port = free_port(), free_port()
        # name=peer URL of every member (EtcdCluster); None: a cluster of this one.
        self.initial_cluster: str | None = None
        # The peer URL the others dial, when it is not the one listened on (a PeerRelay).
        self.advertised_peer_url: str | None = None
        # tls: {"ca", "cert", "key"} paths; clients then need a certificate of that CA.
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, timeout: float = 30.0, wait: bool = True) -> EtcdServer:
        binary = shutil.which("etcd") or "/usr/bin/etcd"
        peer = self.peer_url
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--name", self.name, "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", self.advertised_peer_url or peer,
             "--initial-cluster", self.initial_cluster or f"{self.name}={peer}", "--log-level", "warn",
             # Keeps a test's fsyncs off a shared disk's queue; durability is not under test.
             "--unsafe-no-fsync",
             *(["--cert-file", self.tls["cert"], "--key-file", self.tls["key"], "--client-cert-auth",
                "--trusted-ca-file", self.tls["ca"]] if self.tls else [])],
            stdout=log, stderr=subprocess.STDOUT)
        if wait:
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

    def status(self) -> dict:
        return self.call("/v3/maintenance/status", {})

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    """Three members on loopback ports, one data directory each. `leader()` asks a
    running member which one leads; killing it makes the others elect another."""

    def __init__(self, directory: Path, size: int = 3, *, partitionable: bool = False) -> None:
        self.members = [EtcdServer(directory / f"m{i}", name=f"m{i}") for i in range(size)]
        # partitionable: members reach each other through PeerRelays, which `isolate` cuts.
        self.relays = [PeerRelay(m) for m in self.members] if partitionable else []
        for m, relay in zip(self.members, self.relays):
            m.advertised_peer_url = relay.url
        initial = ",".join(f"{m.name}={m.advertised_peer_url or m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, timeout: float = 60.0) -> EtcdCluster:
        for m in self.members:       # all at once: none is healthy before a quorum runs
            m.start(wait=False)
        for m in self.members:
            wait_until(m.healthy, timeout, interval=0.1, message=f"etcd member {m.name} (log: {m.dir / 'etcd.log'})")
        return self

    def leader(self) -> EtcdServer:
        """The member that leads now, once the running ones agree on one."""
        found: list[EtcdServer] = []

        def agreed() -> bool:
            ids = set()
            by_id = {}
            for m in self.members:
                if not m.running():
                    continue
                try:
                    status = m.status()
                except (AssertionError, OSError):
                    return False
                ids.add(status.get("leader"))
                by_id[status["header"]["member_id"]] = m
            leader = ids.pop() if len(ids) == 1 else None
            if leader in by_id:
                found[:] = [by_id[leader]]
                return True
            return False

        wait_until(agreed, 30, interval=0.1, message="the etcd members agree on a leader")
        return found[0]

    def isolate(self, member: EtcdServer | None) -> None:
        """Cut `member` off from the other members (None: heal), as a network partition
        would: its clients still reach it, its peers do not."""
        cut = member_id(member) if member is not None else None
        for m, relay in zip(self.members, self.relays):
            relay.cut(everyone=m is member, sender=cut)

    def stop(self) -> None:
        for m in self.members:
            m.kill()
        for relay in self.relays:
            relay.close()


def member_id(member: EtcdServer) -> str:
    """A member's id as its peers name it in X-Server-From (hex)."""
    return format(int(member.status()["header"]["member_id"]), "x")


class PeerRelay(TcpRelay):
    """Between one member's peer port and the other members. etcd's peer requests name
    their sender (X-Server-From: member id); `cut` closes, and then refuses, every
    connection (everyone) or those of one sender, both directions of a partition."""

    def __init__(self, member: EtcdServer) -> None:
        super().__init__(member.peer_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._everyone = False
        self._sender: str | None = None
        self._open: list[tuple[dict, socket.socket]] = []

    def cut(self, *, everyone: bool, sender: str | None) -> None:
        self._everyone, self._sender = everyone, sender
        for state, sock in list(self._open):
            if self._refused(state):
                _shut(sock)

    def _refused(self, state: dict) -> bool:
        return self._everyone or (self._sender is not None and state.get("from") == self._sender)

    def upward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        self._open.append((state, src))
        while data := src.recv(65536):
            sender = re.search(rb"X-Server-From: ([0-9a-f]+)", data)
            if sender:
                state["from"] = sender.group(1).decode()
            if self._refused(state):
                break
            dst.sendall(data)
        _shut(src)

    def downward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := src.recv(65536):
            if self._refused(state):
                break
            dst.sendall(data)
        _shut(dst)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class EtcdRelay(TcpRelay):
    """A TCP relay in front of one etcd: `hold_watches()` stops passing etcd's answers on
    the connections whose last request was a watch, while every other call goes on. A
    router behind it then serves an old revision for as long as the test wants, which
    makes a write racing its view of etcd deterministic. `hold_all()` holds every answer
    (a read that takes as long as the test wants); `release()` lets them through."""

    def __init__(self, upstream: EtcdServer) -> None:
        super().__init__(upstream.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: str | None = None           # None, "watches" or "all"
        self._released = threading.Condition()

    def hold_watches(self) -> None:
        self._held = "watches"

    def hold_all(self) -> None:
        self._held = "all"

    def release(self) -> None:
        with self._released:
            self._held = None
            self._released.notify_all()

    def close(self) -> None:
        self.release()
        super().close()

    def upward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := src.recv(65536):
            if data.startswith(b"POST "):
                state["watch"] = data.startswith(b"POST /v3/watch ")
            dst.sendall(data)

    def downward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := src.recv(65536):
            with self._released:
                while self._held == "all" or (self._held == "watches" and state.get("watch")):
                    self._released.wait(1)
            dst.sendall(data)


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
