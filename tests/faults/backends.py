"""Backends that fail on purpose, on loopback: each request's path says how.

A raw asyncio server (in the tests' background loop) reads a request head and then
misbehaves as its path asks; it counts what it received, so that a test can tell a
retry from none. `black_hole()` is a listening socket that drops SYNs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter

HALF_BODY = 4000          # of an announced 8000
HUGE_HEAD = 1024 * 1024   # a response header section of 1 MiB


class FaultBackend:
    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._silent: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self._silent:
            writer.close()
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                path = line.split(" ")[1]
                length = 0
                for field in head.split(b"\r\n")[1:]:
                    name, _, value = field.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                self.paths[path] += 1
                if not await self._answer(path, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer not in self._silent:
                writer.close()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Act as `path` says; True keeps the connection for another request."""
        if path.startswith("/silent"):
            self._silent.append(writer)          # accepted, read, never answered
            return False
        if path.startswith("/half-head"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
        elif path.startswith("/half-body") or path.startswith("/reset-body"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * HALF_BODY) + b"x" * HALF_BODY)
            await writer.drain()
            if path.startswith("/reset-body"):
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close sends RST
        elif path.startswith("/malformed"):
            writer.write(b"HTTP/1.1 2x0 NOT-A-STATUS\r\nthis is not a header line\r\n\r\n")
        elif path.startswith("/huge-head"):
            pad = b"X-Pad: " + b"h" * 1000 + b"\r\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + pad * (HUGE_HEAD // len(pad)) + b"\r\nok")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: fault\r\n\r\nok")
            await writer.drain()
            return True
        await writer.drain()
        return False


@contextlib.contextmanager
def black_hole():
    """An address whose SYNs are dropped: a listener with backlog 0 that never accepts,
    its accept queue filled by connections held here. Linux drops a SYN for a listener
    whose accept queue is full (it does not answer RST, with tcp_abort_on_overflow at
    its default 0), so a connect to it hangs like one to a host that is gone. Unlike
    an unroutable address (which fails at once without a route) or a network namespace
    (which needs root), this works on loopback for any user."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):                  # backlog 0 still queues one or two
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            fillers.append(sock)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(address)
            raise AssertionError("the black hole answered a SYN: its accept queue is not full")
        except socket.timeout:
            pass
        finally:
            probe.close()
        yield f"127.0.0.1:{address[1]}"
    finally:
        for sock in fillers:
            sock.close()
        listener.close()
