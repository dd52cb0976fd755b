"""1 GiB through a proxy, each way, while its memory is watched.

The client is a plain blocking socket: it sends the body in 1 MiB writes (upload) or
reads the response into one reused buffer (download), so the client holds 1 MiB at most
and a proxy that buffers the body is the only thing whose memory can grow.
"""

from __future__ import annotations

import socket
import threading
import time

from procs import peak_rss_mib, reset_peak_rss, rss_mib

MIB = 1024 * 1024


class RssWatch:
    """Samples VmRSS every 20 ms; VmHWM (reset first where allowed) backs it up."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss_mib(pid)
        self.hwm_reset = reset_peak_rss(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm_reset:
            self.peak = max(self.peak, peak_rss_mib(self.pid))


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head ({buf[:200]!r})")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def _head(method: str, path: str, headers: list[tuple[str, str]], length: int | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: sink.bench.test"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def upload(port: int, size: int, headers: list[tuple[str, str]], timeout: float = 300) -> dict:
    block = memoryview(b"u" * MIB)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        t0 = time.monotonic()
        sock.sendall(_head("POST", "/upload", headers, size))
        left = size
        while left > 0:
            k = min(left, MIB)
            sock.sendall(block[:k])
            left -= k
        status, hdrs, rest = _read_head(sock)
        want = int(hdrs.get("content-length", "0"))
        while len(rest) < want:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        secs = time.monotonic() - t0
    got = int(rest) if status == 200 and rest.isdigit() else -1
    return {"status": status, "bytes": size, "backend_counted": got, "ok": status == 200 and got == size,
            "seconds": secs, "mib_s": size / MIB / secs}


def download(port: int, size: int, headers: list[tuple[str, str]], timeout: float = 300) -> dict:
    buf = bytearray(MIB)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        t0 = time.monotonic()
        sock.sendall(_head("GET", f"/download?bytes={size}", headers, None))
        status, hdrs, rest = _read_head(sock)
        got = len(rest)
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            raise RuntimeError("download came back chunked; this client counts Content-Length bodies only")
        want = int(hdrs.get("content-length", "-1"))
        while got < want:
            n = sock.recv_into(view)
            if n == 0:
                break
            got += n
        secs = time.monotonic() - t0
    return {"status": status, "bytes": got, "ok": status == 200 and got == size, "seconds": secs,
            "mib_s": got / MIB / secs}
