"""Misbehaving clients, run as a separate process so that they do not share the test's
interpreter (and its GIL) with the well-behaved client whose latency is measured.

    python -m tests.faults.attackers MODE PORT COUNT SECONDS

prints one JSON line of what happened and exits within SECONDS (plus a second). Every
loop is bounded by that deadline. Modes:

- slowloris: COUNT connections send a request head one byte every 0.2 s, never ending it;
- slowbody:  COUNT connections send a head announcing a 1000-byte body, 10 bytes of it,
             and then nothing;
- noread:    COUNT connections ask for a large download and never read it;
- connect:   COUNT connections opened at once (non-blocking), held until the deadline;
- flood:     new connections, one after another as fast as it goes, each closed at once.
"""

from __future__ import annotations

import errno
import json
import resource
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24      # linux/in.h
HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\nX-Slow: "


def _raise_fd_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))


def _status(data: bytes) -> int:
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _open(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _watch(socks: dict[socket.socket, dict], started: float) -> None:
    """Note any answer or close of the connections still open."""
    for sock, fate in socks.items():
        if fate.get("closed_after") is not None:
            continue
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data and not fate.get("status"):
            fate["status"] = _status(data)
        if not data:
            fate["closed_after"] = round(time.monotonic() - started, 2)


def _summary(socks: dict[socket.socket, dict]) -> dict:
    statuses: dict[str, int] = {}
    for fate in socks.values():
        key = str(fate.get("status", 0))
        statuses[key] = statuses.get(key, 0) + 1
    closed = [f["closed_after"] for f in socks.values() if f.get("closed_after") is not None]
    return {"count": len(socks), "statuses": statuses, "closed": len(closed),
            "last_closed_after": max(closed) if closed else None}


def _until_all_closed(socks: dict[socket.socket, dict], started: float, seconds: float, every: float,
                      step=None) -> dict:
    """Watch the connections until the router closed them all or `seconds` passed;
    `step` (if any) runs before each look."""
    while time.monotonic() - started < seconds:
        if step is not None:
            step()
        _watch(socks, started)
        if all(f.get("closed_after") is not None for f in socks.values()):
            break
        time.sleep(every)
    return _summary(socks)


def slowloris(port: int, count: int, seconds: float) -> dict:
    started = time.monotonic()
    socks = {sock: {} for sock in _open(port, count)}
    sent = 0

    def one_more_byte() -> None:
        nonlocal sent
        for sock, fate in socks.items():
            if fate.get("closed_after") is None:
                try:
                    sock.send(HEAD[sent:sent + 1] if sent < len(HEAD) else b"a")
                except OSError:
                    pass
        sent += 1

    return _until_all_closed(socks, started, seconds, 0.2, one_more_byte)


def slowbody(port: int, count: int, seconds: float) -> dict:
    started = time.monotonic()
    socks = {sock: {} for sock in _open(port, count)}
    for sock in socks:
        sock.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\nContent-Length: 1000\r\n\r\n" + b"b" * 10)
    return _until_all_closed(socks, started, seconds, 0.1)


def noread(port: int, count: int, seconds: float) -> dict:
    started = time.monotonic()
    socks = []
    for sock in _open(port, count):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.send(b"GET /download?bytes=%d HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\n\r\n" % (256 * 1024 * 1024))
        socks.append(sock)
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    return {"count": len(socks)}


def connect(port: int, count: int, seconds: float) -> dict:
    _raise_fd_limit(count)
    started = time.monotonic()
    socks = []
    for n in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        # From 250 source addresses: one source has too few ephemeral ports for 20,000
        # connections and their TIME_WAIT leftovers (IP_BIND_ADDRESS_NO_PORT: the port is
        # picked at connect, for the whole 4-tuple).
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((f"127.0.{1 + n % 250}.{1 + n // 250 % 250}", 0))
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    opened = round(time.monotonic() - started, 2)
    while time.monotonic() - started < seconds:
        time.sleep(0.2)
    fates = {"connected": 0, "reset": 0, "pending": 0, "closed": 0}
    for sock in socks:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE):
            fates["reset"] += 1
        elif err:
            fates["pending"] += 1
        else:
            try:
                data = sock.recv(1)
                fates["closed" if data == b"" else "connected"] += 1
            except BlockingIOError:
                fates["connected"] += 1
            except ConnectionResetError:
                fates["reset"] += 1
            except OSError:
                fates["pending"] += 1
        sock.close()
    return {"count": count, "opened_in": opened, **fates}


def flood(port: int, count: int, seconds: float) -> dict:
    started = time.monotonic()
    done = failed = 0
    while time.monotonic() - started < seconds:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.close()
            done += 1
        except OSError:
            failed += 1
    return {"connections": done, "failed": failed, "per_second": round(done / seconds)}


MODES = {"slowloris": slowloris, "slowbody": slowbody, "noread": noread, "connect": connect, "flood": flood}

if __name__ == "__main__":
    mode, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(MODES[mode](port, count, seconds)), flush=True)
