"""A reference point, not a product: the least a uvloop + httptools proxy can do per request
while doing the header routing of the benchmark (map lookup, tenant and X-Forwarded-*
headers, X-Request-ID, pooled keep-alive upstreams, X-Stamp on the response).

It has none of the router's safety (no limits, deadlines, retries, health, metrics,
request bodies, chunked responses, pipelining or smuggling checks). Measured next to the
router it shows how much of the router's cost is Python + uvloop itself and how much is
everything the router does on top.

    python floor_proxy.py [--batch-writes] [--spin-us N] PORT TENANTS_JSON STAMP=HOST:PORT ...

Two options for experiments on the kernel side (benchmarks/README.md, "Kernel time"), off
in `make bench`: `--batch-writes` holds every write until the event loop has run all the
callbacks of its current wake-up and then writes them back to back; `--spin-us N` burns N
µs of CPU per request, to run the floor at the router's request rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import deque

from httptools import HttpRequestParser, HttpResponseParser

CRLF = b"\r\n"
DROP_UP = frozenset((b"connection", b"keep-alive", b"content-length", b"transfer-encoding"))


class Writes:
    """Every write of the process, sent now or (batched) after the loop's current callbacks."""

    def __init__(self, batch: bool, spin_us: float) -> None:
        self.batch = batch
        self.spin = spin_us / 1e6
        self.held: list = []

    def write(self, transport, data: bytes) -> None:
        if not self.batch:
            transport.write(data)
            return
        if not self.held:
            asyncio.get_running_loop().call_soon(self.flush)
        self.held.append((transport, data))

    def flush(self) -> None:
        held, self.held = self.held, []
        for transport, data in held:
            transport.write(data)

    def burn(self) -> None:
        if self.spin:
            end = time.perf_counter() + self.spin
            while time.perf_counter() < end:
                pass


WRITES = Writes(False, 0.0)


class Upstream(asyncio.Protocol):
    def __init__(self, pool: deque, stamp_line: bytes) -> None:
        self.pool = pool
        self.stamp_line = stamp_line
        self.parser = HttpResponseParser(self)
        self.client = None
        self.transport = None
        self.out: list[bytes] = []
        self.length = b"0"

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, client, head: bytes) -> None:
        self.client = client
        WRITES.write(self.transport, head)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_status(self, reason: bytes) -> None:
        self.out = [b"HTTP/1.1 %d %b\r\n" % (self.parser.get_status_code(), reason)]

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"content-length":
            self.length = value
        elif low not in DROP_UP:
            self.out.append(name + b": " + value + CRLF)

    def on_headers_complete(self) -> None:
        self.out.append(b"Content-Length: " + self.length + CRLF + self.stamp_line + CRLF + CRLF)

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        WRITES.write(client.transport, b"".join(self.out))
        self.pool.append(self)

    def connection_lost(self, exc) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    counter = 0
    prefix = os.urandom(4).hex().encode() + b"-"

    def __init__(self, routes: dict, upstreams: dict) -> None:
        self.routes = routes
        self.upstreams = upstreams
        self.parser = HttpRequestParser(self)
        self.transport = None
        self.ip = b"-"

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ip = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.lines: list[bytes] = []
        self.tenant = self.host = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"x-tenant-id":
            self.tenant = value
        else:
            if low == b"host":
                self.host = value
            self.lines.append(name + b": " + value + CRLF)

    def on_message_complete(self) -> None:
        WRITES.burn()
        stamp = self.routes.get(self.tenant)
        if stamp is None:
            WRITES.write(self.transport, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        Client.counter += 1
        head = b"".join((self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n", *self.lines,
                         b"X-Tenant-ID: ", self.tenant, b"\r\nX-Forwarded-For: ", self.ip,
                         b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ", self.host or b"",
                         b"\r\nX-Request-ID: ", self.prefix, b"%x" % Client.counter, b"\r\n\r\n"))
        pool, make = self.upstreams[stamp]
        if pool:
            pool.pop().send(self, head)
        else:
            asyncio.get_running_loop().create_task(make(self, head))


async def main(port: int, tenants_file: str, backends: list[str]) -> None:
    loop = asyncio.get_running_loop()
    with open(tenants_file, "rb") as f:
        routes = {t.encode(): s for t, s in json.load(f).items()}
    upstreams = {}
    for spec in backends:
        stamp, _, address = spec.partition("=")
        host, _, bport = address.rpartition(":")
        pool: deque = deque()
        stamp_line = b"X-Stamp: " + stamp.encode()

        async def make(client, head, host=host, bport=int(bport), pool=pool, stamp_line=stamp_line):
            _, up = await loop.create_connection(lambda: Upstream(pool, stamp_line), host, bport)
            up.send(client, head)

        upstreams[stamp] = (pool, make)
    server = await loop.create_server(lambda: Client(routes, upstreams), "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop
    uvloop.install()
    args = sys.argv[1:]
    batch = "--batch-writes" in args
    if batch:
        args.remove("--batch-writes")
    spin = 0.0
    if "--spin-us" in args:
        i = args.index("--spin-us")
        spin = float(args[i + 1])
        del args[i:i + 2]
    WRITES = Writes(batch, spin)
    asyncio.run(main(int(args[0]), args[1], args[2:]))
