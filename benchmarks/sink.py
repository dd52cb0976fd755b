"""A loopback backend for the 1 GiB scenarios: counts what it is sent, sends what it is asked.

    POST /upload           reads and drops the body; answers its size in bytes
    GET  /download?bytes=N answers N bytes (Content-Length), written as the socket drains

Run as `python sink.py PORT [PORT ...]`. It keeps nothing: its own memory stays flat,
so any growth seen during a transfer belongs to the proxy in between.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import parse_qs, urlsplit

from httptools import HttpRequestParser

CHUNK = b"x" * (1024 * 1024)


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = HttpRequestParser(self)
        self.url = b""
        self.received = 0
        self.transport = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.sending = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            self.transport.close()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc) -> None:
        self.can_write.set()
        if self.sending is not None:
            self.sending.cancel()

    def on_message_begin(self) -> None:
        self.url = b""
        self.received = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        parts = urlsplit(self.url.decode())
        if parts.path == "/download":
            n = int(parse_qs(parts.query).get("bytes", ["0"])[0])
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 b"Content-Length: %d\r\n\r\n" % n)
            self.sending = asyncio.get_running_loop().create_task(self._send(n))
        else:
            body = b"%d" % self.received
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))

    async def _send(self, n: int) -> None:
        view = memoryview(CHUNK)
        while n > 0 and not self.transport.is_closing():
            await self.can_write.wait()
            k = min(n, len(CHUNK))
            self.transport.write(view[:k])
            n -= k
        self.sending = None


async def main(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Sink, "127.0.0.1", p, reuse_address=True) for p in ports]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
