"""Zero-downtime upgrade: a new router takes the listening sockets of the running one.

The running supervisor listens on `takeover.sock` in its state directory. A new one
started with `serve --takeover` connects there and, over newline-delimited JSON:

    new -> old   {"hello": PROTOCOL, "version": ...}
    old -> new   {"ok": false, "error": ...}                 refused; the old one serves on
    old -> new   {"ok": true, "proxy": n, "admin": m,        the listening sockets, and:
                  "sets": k, "address": a} + fds
                 the old one has stopped taking config changes, written what it accepted
                 and released the state directory
    new -> old   {"drain": true}                              the new workers accept: go

Between the second and third step both serve the data path from the same sockets, so
nothing is refused. If the new one goes away before saying "drain" (it failed to start),
the old one takes its state directory back and carries on as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Awaitable, Callable

import orjson

from router import __version__

log = logging.getLogger("stamp_router.takeover")

# Routers speaking the same PROTOCOL can hand over to each other; a change to what is
# handed over (the messages, the order of the sockets, the state directory's layout)
# takes a new number, and a router refuses a takeover by another number.
PROTOCOL = 1
SOCKET_NAME = "takeover.sock"
MAX_FDS = 64
HANDOVER_TIMEOUT = 60.0      # for the new router to start its workers once it has the sockets


class TakeoverError(Exception):
    """Nothing to take over, or the running router refused: the message says which."""


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


# -- the new router's side ----------------------------------------------------------------

class Handover:
    """The new router's end: the sockets it received, and the word that lets the old go.

    `sets`: the proxy's sockets, one set per worker slot of the old router
    (router.process.listeners); a router that does not say how many sent one set.
    `address`: the proxy address they are bound to, when the old router said it."""

    def __init__(self, conn: socket.socket, sets: list[list[socket.socket]], admin: list[socket.socket],
                 address: str | None = None) -> None:
        self._conn = conn
        self.sets = sets
        self.admin_listeners = admin
        self.address = address

    def release_old(self) -> None:
        """Our workers accept: tell the old router to drain and exit."""
        try:
            self._conn.sendall(b'{"drain": true}\n')
        finally:
            self._conn.close()

    def abandon(self) -> None:
        """We could not start: the old router keeps serving (it sees the connection close)."""
        self._conn.close()
        for sock in [s for group in self.sets for s in group] + self.admin_listeners:
            sock.close()


def request_takeover(state_dir: str, timeout: float = 30.0) -> Handover:
    """Ask the router running on `state_dir` for its sockets (blocking)."""
    path = socket_path(state_dir)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        conn.close()
        raise TakeoverError(f"no running router to take over: nothing answers on {path} ({exc.strerror})") from None
    except OSError as exc:
        conn.close()
        raise TakeoverError(f"cannot reach the running router on {path}: {exc}") from None
    try:
        conn.sendall(orjson.dumps({"hello": PROTOCOL, "version": __version__, "pid": os.getpid()}) + b"\n")
        data, fds, _, _ = socket.recv_fds(conn, 65536, MAX_FDS)
    except OSError as exc:
        conn.close()
        raise TakeoverError(f"the running router did not answer the takeover: {exc}") from None
    socks = [socket.socket(fileno=fd) for fd in fds]
    try:
        answer = orjson.loads(data.split(b"\n", 1)[0]) if data else {"ok": False, "error": "no answer"}
    except orjson.JSONDecodeError:
        answer = {"ok": False, "error": f"an answer that is not JSON: {data[:100]!r}"}
    if not answer.get("ok") or len(socks) != answer.get("proxy", 0) + answer.get("admin", 0):
        for sock in socks:
            sock.close()
        conn.close()
        raise TakeoverError(f"the running router refused the takeover: {answer.get('error', 'sockets missing')}")
    conn.settimeout(None)
    proxy = socks[:answer["proxy"]]
    count = answer.get("sets") or 1
    per = len(proxy) // count if count and len(proxy) % count == 0 else len(proxy)
    sets = [proxy[i:i + per] for i in range(0, len(proxy), per)] if proxy else []
    address = answer.get("address") if isinstance(answer.get("address"), str) else None
    return Handover(conn, sets, socks[answer["proxy"]:], address)


# -- the running router's side --------------------------------------------------------------

class TakeoverServer:
    """Listens on the state directory's takeover socket for a new router.

    `hand_over()` stops config changes, flushes and releases the state directory and
    returns the sockets to pass; `resume()` undoes that if the new router never says
    drain; `drain()` is called once it has.
    """

    def __init__(self, state_dir: str, hand_over: Callable[[], Awaitable[tuple[list[list], list, str | None]]],
                 resume: Callable[[], Awaitable[None]], drain: Callable[[], None]) -> None:
        self.path = socket_path(state_dir)
        self._hand_over, self._resume, self._drain = hand_over, resume, drain
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._busy = False

    async def start(self) -> None:
        try:
            os.unlink(self.path)         # a socket file left by a router that died
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)       # whoever may take the sockets may stop this router
        sock.listen(4)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    @property
    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    async def close(self, unlink: bool = True) -> None:
        if self._sock is None:
            return
        self._accepting.cancel()
        self._sock.close()
        self._sock = None
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            conn.setblocking(False)
            try:
                await self._handle(conn)
            except Exception:  # noqa: BLE001 - a bad peer must not stop this router
                log.exception("takeover: failed")
            finally:
                conn.close()

    async def _handle(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()

        def reply(data: dict, fds: list[int] = ()) -> None:
            # A few hundred bytes into an empty socket buffer: the send does not block.
            socket.send_fds(sock, [orjson.dumps(data) + b"\n"], list(fds))

        async def line(timeout: float) -> bytes:
            buf = b""
            async with asyncio.timeout(timeout):
                while b"\n" not in buf:
                    chunk = await loop.sock_recv(sock, 4096)
                    if not chunk:
                        break
                    buf += chunk
            return buf.split(b"\n", 1)[0]

        try:
            hello = orjson.loads(await line(10.0))
        except (TimeoutError, orjson.JSONDecodeError, ValueError):
            return
        version = hello.get("version") if isinstance(hello, dict) else None
        if not isinstance(hello, dict) or hello.get("hello") != PROTOCOL:
            log.warning("takeover by version %s refused: it speaks takeover protocol %r, this router %d; "
                        "still serving", version, hello.get("hello") if isinstance(hello, dict) else None, PROTOCOL)
            reply({"ok": False, "error": f"incompatible versions: this router ({__version__}) speaks takeover "
                                         f"protocol {PROTOCOL}, the new one {hello.get('hello')!r}; "
                                         "stop this one and start the new one instead"})
            return
        if self._busy:
            reply({"ok": False, "error": "another takeover is under way"})
            return
        self._busy = True
        try:
            log.info("takeover by version %s (pid %s): handing over the listening sockets", version, hello.get("pid"))
            sets, admin, address = await self._hand_over()
            proxy = [sock for group in sets for sock in group]
            reply({"ok": True, "proxy": len(proxy), "admin": len(admin), "sets": len(sets), "address": address},
                  [s.fileno() for s in proxy + admin])
            try:
                word = await line(HANDOVER_TIMEOUT)
            except (TimeoutError, OSError):
                word = b""
            if word.strip() == b'{"drain": true}':
                log.info("takeover: the new router serves; draining")
                self._drain()
                return
            log.warning("takeover: the new router went away before it served; serving on")
            await self._resume()
        finally:
            self._busy = False
