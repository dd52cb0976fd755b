"""A TCP relay on loopback in front of one server, for tests that act on the traffic
between a real client and a real server (hold answers back, answer in the server's
place). Subclasses override `upward` (client to server) or `downward` (server to
client); both pass bytes on unchanged by default. Threads, so that it serves a client
running its own event loop; `close()` ends every connection."""

from __future__ import annotations

import socket
import threading


class TcpRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            state: dict = {}          # per connection, shared by both directions
            for target, args in ((self.upward, (client, upstream, state)), (self.downward, (upstream, client, state))):
                threading.Thread(target=self._run, args=(target, *args), daemon=True).start()

    @staticmethod
    def _run(target, src: socket.socket, dst: socket.socket, state: dict) -> None:
        try:
            target(src, dst, state)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def upward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := src.recv(65536):
            dst.sendall(data)

    def downward(self, src: socket.socket, dst: socket.socket, state: dict) -> None:
        while data := src.recv(65536):
            dst.sendall(data)
