"""Load from client threads, and which worker process holds which client connection."""

from __future__ import annotations

import http.client
import os
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ConnStats:
    port: int                  # the client's local port: names the connection
    ok: int = 0
    failed: list[str] = field(default_factory=list)


class Load:
    """`clients` threads, each sending requests on a keep-alive connection until stopped;
    a failed request is recorded against its connection, and the client reconnects.

    Each thread sends at most `max_requests` (a bound, not a pace)."""

    def __init__(self, port: int, headers: dict, clients: int = 8, max_requests: int = 20000,
                 fresh_connections: bool = False) -> None:
        self.port = port
        self.headers = headers
        self.clients = clients
        self.max_requests = max_requests
        self.fresh = fresh_connections
        self.conns: list[ConnStats] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(c.ok for c in self.conns)

    @property
    def failures(self) -> list[tuple[int, str]]:
        with self._lock:
            return [(c.port, f) for c in self.conns for f in c.failed]

    def _connect(self) -> tuple[http.client.HTTPConnection, ConnStats] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.connect()
        except ConnectionRefusedError:
            with self._lock:
                self.refused += 1
            return None
        stats = ConnStats(conn.sock.getsockname()[1])
        with self._lock:
            self.conns.append(stats)
        return conn, stats

    def _run(self) -> None:
        current = None
        for _ in range(self.max_requests):
            if self._stop.is_set():
                break
            if current is None:
                current = self._connect()
                if current is None:
                    time.sleep(0.01)
                    continue
            conn, stats = current
            try:
                conn.request("GET", "/load", headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise OSError(f"status {resp.status}")
                stats.ok += 1
                if self.fresh or resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    current = None
            except (OSError, http.client.HTTPException) as exc:
                stats.failed.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                current = None
        if current is not None:
            current[0].close()


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def worker_of_connections(router_port: int, worker_pids: list[int]) -> dict[int, int]:
    """client port -> pid of the worker holding the server side of that connection."""
    by_inode: dict[int, int] = {}
    for pid in worker_pids:
        for inode in _socket_inodes(pid):
            by_inode[inode] = pid
    out = {}
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], int(parts[9])
            if int(local.split(":")[1], 16) == router_port and inode in by_inode:
                out[int(remote.split(":")[1], 16)] = by_inode[inode]
    return out


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
