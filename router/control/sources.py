"""Where candidates come from: the watched config file, and the control-plane URL.

Neither source touches the routing state; each hands what it read to a callback that
submits it to the reloader. A source that fails (a file half-written or gone, a control
plane down) leaves the config being served as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp

from router.config.schema import Control
from router.control.inotify import DirectoryHint

log = logging.getLogger("stamp_router.control")

Fingerprint = tuple | None

# A file written in place is acted on once it has stayed the same this long (or one
# watch interval, if shorter): an editor or a `cp` writes in several calls. A file put in
# place by a rename or a symlink swap is complete when it appears, and is read at once.
SETTLE = 0.1
# Largest control-plane document accepted.
MAX_DOCUMENT_BYTES = 256 * 1024**2


def fingerprint(path: str) -> Fingerprint:
    """What identifies a version of the file at `path`, following symlinks.

    The resolved path changes when a symlink anywhere on the way is swapped (Kubernetes
    ConfigMap volumes swap a `..data` directory link); inode and device change on an
    atomic rename; size, mtime and ctime on an in-place write. None when it is missing.
    """
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fingerprints(paths: list[str]) -> dict[str, Fingerprint]:
    return {p: fingerprint(p) for p in paths}


def replaced(before: dict[str, Fingerprint], after: dict[str, Fingerprint]) -> bool:
    """Whether every file that changed is another file now (renamed or swapped in)."""
    for path, fp in after.items():
        old = before.get(path)
        if fp == old:
            continue
        if fp is None or old is None or fp[:3] == old[:3]:      # (real path, device, inode)
            return False
    return True


class FileWatcher:
    """Polls the fingerprints of the config file (and its tenants_file) every interval.

    Polling decides: it sees symlink swaps and renames of any component the same way,
    works on every filesystem a ConfigMap or a network volume may be, and costs a few stat
    calls a second. inotify, where it works, only says when to look (router.control.inotify),
    so a change is usually read within milliseconds rather than up to an interval later.
    """

    def __init__(self, paths: Callable[[], list[str]], interval: Callable[[], float],
                 on_change: Callable[[], Awaitable[object]]) -> None:
        self._paths = paths
        self._interval = interval
        self._on_change = on_change
        self._last: dict[str, Fingerprint] | None = None
        self.hint: DirectoryHint | None = None      # while running with inotify

    def prime(self, seen: dict[str, Fingerprint]) -> None:
        """The fingerprints of the files the config being served was read from, taken
        before they were read."""
        self._last = {p: seen[p] if p in seen else fingerprint(p) for p in self._paths()}

    async def run(self) -> None:
        if self._last is None:
            self.prime({})
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        hint = DirectoryHint.open()
        if hint is not None:
            loop.add_reader(hint.fd, hint.drain, wake.set)
            await asyncio.to_thread(hint.watch, self._paths())
        self.hint = hint
        try:
            look_again = False
            while True:
                if not look_again:
                    # An inotify event in a watched directory ends the wait early; the
                    # interval still bounds it (no inotify here, or a filesystem without).
                    try:
                        await asyncio.wait_for(wake.wait(), self._interval())
                    except asyncio.TimeoutError:
                        pass
                wake.clear()
                # After a reload, look again at once: a change made while it was being
                # applied (a big table takes a second or more) is picked up without
                # waiting an interval.
                look_again = False
                # stat in a worker thread: a hung network filesystem must not hold the loop.
                now = await asyncio.to_thread(self._look, hint)
                if now == self._last:
                    continue
                if not replaced(self._last, now):
                    now = await self._settled(now)
                missing = [p for p, fp in now.items() if fp is None]
                if missing:
                    if now != self._last:
                        log.warning("config file %s is missing; still serving the config loaded before",
                                    ", ".join(missing))
                    self._last = now
                    continue
                self._last = now
                look_again = True
                try:
                    await self._on_change()
                except Exception:  # noqa: BLE001 - the watcher outlives any one bad reload
                    log.exception("reloading after a file change failed")
        finally:
            self.hint = None
            if hint is not None:
                loop.remove_reader(hint.fd)
                hint.close()

    def _look(self, hint: DirectoryHint | None) -> dict[str, Fingerprint]:
        paths = self._paths()
        if hint is not None:
            hint.watch(paths)         # new paths (a tenants_file named since), swapped dirs
        return fingerprints(paths)

    async def _settled(self, now: dict[str, Fingerprint]) -> dict[str, Fingerprint]:
        settle = min(SETTLE, self._interval())
        for _ in range(50):
            await asyncio.sleep(settle)
            again = await asyncio.to_thread(fingerprints, list(now))
            if again == now:
                break
            now = again
        return now


@dataclass
class Fetched:
    status: str                # changed | not_modified | error
    data: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    error: str = ""


class HttpPoller:
    """Polls `control.url` with If-None-Match; backs off exponentially when it fails.

    A rejected document keeps its ETag as seen, so the same bad document is not fetched
    and judged again every interval; the next one the control plane publishes is.
    """

    def __init__(self, settings: Callable[[], Control], token: Callable[[], str | None],
                 on_document: Callable[[Fetched], Awaitable[object]], on_poll: Callable[[str], None]) -> None:
        self._settings = settings
        self._token = token
        self._on_document = on_document
        self._on_poll = on_poll
        self.etag: str | None = None
        self.last_body: bytes | None = None
        self.failures = 0
        self.last_error = ""
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, *, conditional: bool = True, timeout: float | None = None) -> Fetched:
        settings = self._settings()
        headers = {"Accept": "application/json, application/toml;q=0.9"}
        if conditional and self.etag:
            headers["If-None-Match"] = self.etag
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if timeout is None:
            timeout = max(5.0, min(settings.interval, 30.0))
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(settings.url, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status == 304:
                    return Fetched("not_modified", etag=self.etag)
                if resp.status != 200:
                    hint = ""
                    if settings.token_file and not token:
                        hint = f" (no token sent: control.token_file {settings.token_file} is unreadable or empty)"
                    return Fetched("error", error=f"{settings.url} answered {resp.status}{hint}")
                data = await _read_capped(resp)
                return Fetched("changed", data=data, content_type=resp.headers.get("Content-Type"),
                               etag=resp.headers.get("ETag"))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return Fetched("error", error=f"{settings.url}: {exc.__class__.__name__}: {exc}".rstrip(": "))

    def delay(self) -> float:
        """The wait before the next poll: the interval, doubled per failure up to max_backoff."""
        s = self._settings()
        if not self.failures:
            return s.interval
        # Jitter, so a fleet of routers does not retry in step against a recovering server.
        return min(s.max_backoff, s.interval * 2 ** min(self.failures, 30)) * random.uniform(0.8, 1.0)

    async def poll(self) -> Fetched:
        fetched = await self.fetch()
        if fetched.status == "error":
            self.failures += 1
            if fetched.error != self.last_error or self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("control plane poll failed (%d in a row): %s; still serving the config loaded before",
                            self.failures, fetched.error)
            self.last_error = fetched.error
        else:
            if self.failures:
                log.info("control plane reachable again after %d failed polls", self.failures)
            self.failures, self.last_error = 0, ""
        if fetched.status == "changed":
            self.etag = fetched.etag
            # Without ETags every poll is a 200: the same bytes are not judged again.
            digest = hashlib.sha256(fetched.data).digest()
            if digest == self.last_body:
                self._on_poll("unchanged")
                return fetched
            self.last_body = digest
            await self._on_document(fetched)
        else:
            self._on_poll(fetched.status)
        return fetched

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.delay())
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - the poller outlives any one bad document
                log.exception("handling a control-plane document failed")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_DOCUMENT_BYTES:
        raise ValueError(f"document of {resp.content_length} bytes is over the {MAX_DOCUMENT_BYTES} byte limit")
    out = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 20):
        out += chunk
        if len(out) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"document is over the {MAX_DOCUMENT_BYTES} byte limit")
    return bytes(out)
