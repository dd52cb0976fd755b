"""New TLS connections per second against one listener: the `tls-handshake` load.

    python benchmarks/handshakes.py --port 8443 [--mode full|resumed] [--procs 4] [--duration 5]

wrk keeps its connections alive, so it cannot measure handshakes. This opens connections
one after another in each of `--procs` processes, for `--duration` seconds, and prints
one JSON line: connections completed, how many resumed, errors.

One connection: TCP connect, TLS handshake (TLS 1.3, SNI `--server-name`; no chain
verification: the server's work is the same, and the client's core is the scarce one),
half-close, read until the server closes (so the server has finished its side, tickets
included, before the next connection starts: at most `--procs` handshakes in flight),
then close with SO_LINGER 0, so that hundreds of thousands of connections leave no
TIME_WAIT sockets to run the loopback out of ports. `resumed` first makes one full
handshake with a request, to receive a session ticket, then offers that ticket on every
connection; one the server did not resume is counted in `not_resumed`.

Bounded: every process stops after `--duration`, and the parent waits for them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import ssl
import struct
import sys
import time

LINGER_RST = struct.pack("ii", 1, 0)


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def one(ctx: ssl.SSLContext, addr, name: str, session=None, request: bytes = b"") -> tuple[ssl.SSLSession, bool]:
    """One connection; its session (tickets included when `request` was answered) and
    whether the handshake resumed."""
    raw = socket.create_connection(addr, timeout=10)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    tls = ctx.wrap_socket(raw, server_hostname=name, session=session)
    try:
        reused = tls.session_reused
        if request:
            tls.sendall(request)
            tls.recv(65536)
            return tls.session, reused
        # SSLSocket.shutdown drops the TLS layer: what follows (the server's tickets, its
        # close) is read as raw bytes, which costs the client nothing to decrypt.
        tls.shutdown(socket.SHUT_WR)
        while tls.recv(65536):
            pass
        return None, reused
    except ConnectionResetError:
        return None, reused
    finally:
        tls.close()


def worker(args) -> dict:
    port, name, mode, duration, request = args
    ctx = client_context()
    addr = ("127.0.0.1", port)
    session = None
    if mode == "resumed":
        session = one(ctx, addr, name, request=request)[0]
    done = resumed = errors = 0
    end = time.monotonic() + duration
    t0 = time.monotonic()
    while time.monotonic() < end:
        try:
            reused = one(ctx, addr, name, session)[1]
        except (OSError, ssl.SSLError):
            errors += 1
            continue
        done += 1
        resumed += reused
    return {"connections": done, "resumed": resumed, "errors": errors, "seconds": time.monotonic() - t0}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/handshakes.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", default="localhost", help="SNI (default localhost)")
    p.add_argument("--mode", choices=("full", "resumed"), default="full")
    p.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--request", default="GET / HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: t0000007\r\n\r\n",
                   help="the request of the first connection in resumed mode (it brings the ticket)")
    a = p.parse_args(argv)
    job = (a.port, a.server_name, a.mode, a.duration, a.request.encode())
    with multiprocessing.get_context("fork").Pool(a.procs) as pool:
        parts = pool.map(worker, [job] * a.procs)
    n = sum(x["connections"] for x in parts)
    seconds = max(x["seconds"] for x in parts)
    out = {"mode": a.mode, "procs": a.procs, "connections": n, "seconds": seconds,
           "per_second": n / seconds if seconds else 0.0,
           "resumed": sum(x["resumed"] for x in parts), "not_resumed": n - sum(x["resumed"] for x in parts),
           "errors": sum(x["errors"] for x in parts)}
    print("HANDSHAKES_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
