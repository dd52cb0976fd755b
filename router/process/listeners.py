"""The proxy's listening sockets, opened once by the supervisor and shared by its workers.

The supervisor holds them for its whole life and every worker accepts on the same ones
(inherited across fork; a new router taking over receives them with SCM_RIGHTS). A
worker that exits, crashes or is replaced therefore never closes a listening socket: the
connections in its accept queue stay there for the other workers, or the replacement,
to accept. Closing an SO_REUSEPORT listener, by contrast, resets what sits in its queue.
"""

from __future__ import annotations

import socket

from router.config.addresses import parse_hostport


def open_listeners(address: str, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Bind and listen on every address `address` resolves to (as asyncio's create_server
    would: "localhost" may be 127.0.0.1 and ::1)."""
    host, port = parse_hostport(address)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks
