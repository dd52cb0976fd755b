"""Python cost of one proxied request, without sockets: the data path's own CPU.

Drives the real protocol objects (ClientConnection, Exchange, UpstreamConnection) with
in-memory transports: request bytes in, response bytes in, count the time. Syscalls and
the event loop are left out on purpose, so the figure is stable on a busy machine and
shows what the Python side costs per request (the part we can optimise).

    .venv/bin/python benchmarks/dataplane_micro.py [--requests 50000] [--repeat 5] [--profile] [--floor]

--floor drives floor_proxy.py's protocol objects the same way: the least a uvloop +
httptools proxy can cost here, for comparison.

Instructions per request, the steadiest figure on a busy machine, are the difference of
two callgrind runs divided by the difference in requests:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        benchmarks/dataplane_micro.py --requests N --repeat 1 --warmup 500

(callgrind prints the total on stderr: `Collected : ...`), with N = 1000 and N = 5000.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from prometheus_client import CollectorRegistry

from router.config import validate_document
from router.core.snapshot import build_snapshot
from router.health import HealthRegistry
from router.metrics import ProxyMetrics
from router.proxy.batch import batch_for
from router.proxy.downstream import ClientConnection
from router.proxy.server import ProxyServer
from router.proxy.upstream import UpstreamConnection
from router.state import RouterState

REQUEST = (b"GET /api/items?id=42 HTTP/1.1\r\nHost: acme.stamps.test\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\nX-Tenant-ID: acme\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 05:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


class MemTransport:
    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default


DOC = {
    "routing": {"sources": ["header"], "domains": ["stamps.test"]},
    "stamps": [{"name": "eu-1", "region": "eu", "backends": ["127.0.0.1:9"], "health": {"enabled": False}}],
    "tenants": {"acme": "eu-1"},
}


def build(doc: dict = DOC, transport: type = MemTransport, connection: type = ClientConnection):
    """The data path of one client connection (of class `connection`) with one pooled
    upstream connection to the stamp's first backend (also used by tests/proxy/inproc.py).
    Needs a running loop."""
    registry = CollectorRegistry()
    state = RouterState(build_snapshot(validate_document(doc, source="micro"), loaded_at=time.time()),
                        HealthRegistry(registry))
    metrics = ProxyMetrics(registry, lambda: {})
    server = ProxyServer(state, metrics)
    pool = server.pools.get(doc["stamps"][0]["backends"][0])
    upstream = UpstreamConnection(pool)
    upstream.connection_made(transport())
    pool.put(upstream)
    client = connection(server)
    client.connection_made(transport())
    return server, client, upstream, metrics


def build_floor():
    """floor_proxy.py's client and one pooled upstream, over in-memory transports."""
    from collections import deque

    from floor_proxy import Client, Upstream     # run as a script: benchmarks/ is on sys.path
    pool: deque = deque()
    upstream = Upstream(pool, b"X-Stamp: eu-1")
    upstream.connection_made(MemTransport())
    pool.append(upstream)
    client = Client({b"acme": "eu-1"}, {"eu-1": (pool, None)})
    client.connection_made(MemTransport())
    return client, upstream


async def run(n: int, profile: bool, warmup: int, repeat: int, floor: bool = False) -> None:
    if floor:
        client, upstream = build_floor()
        metrics = None
        wire = client.transport

        def one() -> None:
            client.data_received(REQUEST)
            upstream.data_received(RESPONSE)
    else:
        server, client, upstream, metrics = build()
        wire = client.transport.transport
        # The router's writes wait for the end of the loop's wake-up (router/proxy/batch.py):
        # flush after each read, as the loop would.
        flush = batch_for(asyncio.get_running_loop()).flush

        def one() -> None:
            client.data_received(REQUEST)
            flush()
            upstream.data_received(RESPONSE)
            flush()

    for _ in range(warmup):
        one()
    if profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n // 4):
            one()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    # The best of several rounds: on a shared machine the minimum is the figure least
    # disturbed by other processes.
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(n):
            one()
        best = min(best, time.process_time() - t0)
    assert wire.written > 0 and (metrics is None or metrics.stamp("eu-1").codes[2] >= n)
    print(f"{n} requests x {repeat}: {best / n * 1e6:.2f} us of Python CPU per proxied request "
          f"(best round, no syscalls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--profile", action="store_true", help="cProfile the loop instead of timing it")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best is reported")
    parser.add_argument("--floor", action="store_true", help="measure floor_proxy.py instead of the router")
    args = parser.parse_args()
    import uvloop
    uvloop.install()  # as in `serve`: loop.time() and friends are C there
    asyncio.run(run(args.requests, args.profile, args.warmup, args.repeat, args.floor))


if __name__ == "__main__":
    main()
