"""The data path in-process: the real ClientConnection, Exchange and UpstreamConnection
over in-memory transports (benchmarks/dataplane_micro.py's), for tests that look at exact
bytes and internal state; the socket tests of this package look from outside."""

from __future__ import annotations

import asyncio

from benchmarks.dataplane_micro import MemTransport, build
from router.proxy.batch import batch_for
from router.proxy.downstream import ClientConnection

BACKEND = "127.0.0.1:9"


class Recorder(MemTransport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


def doc(**routing) -> dict:
    return {
        "routing": {"sources": ["header"], **routing},
        "stamps": [{"name": "eu-1", "region": "eu", "backends": [BACKEND], "health": {"enabled": False}}],
        "tenants": {"acme": "eu-1"},
    }


class DataPath:
    """One client connection and one pooled upstream connection. Build inside a running loop.
    `connection` is the client connection's class: a test injects a subclass to make it fail."""

    def __init__(self, config: dict | None = None, connection: type = ClientConnection) -> None:
        self.server, self.client, self.upstream, self.metrics = build(config or doc(), Recorder, connection)

    def request(self, data: bytes) -> bytes:
        """Client bytes in; the bytes sent upstream out."""
        self.client.data_received(data)
        return self.sent_upstream()

    def respond(self, *reads: bytes) -> bytes:
        """Backend bytes in, one data_received per read; the bytes sent to the client out."""
        for data in reads:
            self.upstream.data_received(data)
        return self.sent_to_client()

    # Writes wait for the end of the loop's wake-up (router/proxy/batch.py): send them
    # as the loop would before looking.
    def sent_upstream(self) -> bytes:
        batch_for(asyncio.get_running_loop()).flush()
        return self.upstream.transport.transport.take()

    def sent_to_client(self) -> bytes:
        batch_for(asyncio.get_running_loop()).flush()
        return self.client.transport.transport.take()


def in_loop(fn):
    """Run a test body with a running loop (ProxyServer reads it)."""
    async def body():
        return fn()
    return asyncio.run(body())
