# cython: annotation_typing=False
"""The memory guard of a worker: reads its own resident memory at every deadline sweep and
carries out what router.core.overload decides (limits.max_memory).

Each worker watches itself rather than the supervisor watching them all: the worker
that grows is the one that must stop taking work, it can do so within one sweep without
a round trip to a supervisor that may be busy, and the kernel's OOM killer also picks
one process by its own size. The supervisor holds the config and the pins, which do not
grow with traffic; it is not limited.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from typing import TYPE_CHECKING

from router.core.overload import RECOVER_SHARE, STUCK_AFTER, Pressure, next_pressure, stuck

if TYPE_CHECKING:
    from router.proxy.server import ProxyServer

log = logging.getLogger("router.proxy")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MiB = 1024 * 1024


class ResidentMemory:
    """This process's resident set size, from /proc/self/statm (one pread, no parsing of
    /proc/self/status); None where there is no procfs."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    def read(self) -> int | None:
        if self._fd is None:
            return None
        fields = os.pread(self._fd, 128, 0).split()
        return int(fields[1]) * _PAGE

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None          # not glibc: freed memory goes back to the OS as that libc decides


class MemoryGuard:
    """One per ProxyServer. `check()` runs at every sweep (router.proxy.server); every
    request reads `shedding` (a field, not a property: the compiled build reads it as C)."""

    __slots__ = ("server", "memory", "pressure", "_trim", "_warned_unmeasured", "_replacing", "_open_at", "shedding")

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.memory = ResidentMemory()
        self.pressure = Pressure.NORMAL
        self.shedding = False
        self._trim = _malloc_trim()
        self._warned_unmeasured = False
        self._open_at = 0.0              # the last check that found a connection open
        self._replacing = False

    def check(self, now: float) -> None:
        limit = self.server.state.snapshot.config.limits.max_memory
        resident = self.memory.read()
        if resident is None:
            if limit is not None and not self._warned_unmeasured:
                self._warned_unmeasured = True
                log.warning("limits.max_memory is set but this system has no /proc/self/statm: not enforced")
            return
        if limit is not None and (resident >= limit or self.pressure is Pressure.SHEDDING):
            # Freed memory is given back to the OS before it is judged, so that the resident
            # size says what is in use: a heap holding only garbage sheds nothing, and what
            # the shed connections held counts as soon as it is free (Envoy's overload
            # manager shrinks its heap for the same reason).
            resident = self._shrink() or resident
        metrics = self.server.metrics
        metrics.resident_memory = resident
        if self.server.connections or self.pressure is Pressure.NORMAL:
            self._open_at = now
        state = next_pressure(self.pressure, resident, limit)
        if state is self.pressure:
            if stuck(state, now - self._open_at) and not self._replacing:
                self._replacing = True
                log.error("resident memory %d MiB is still past %d MiB with no connection left to shed for %.0f s: "
                          "this worker exits to be replaced by a fresh one", resident // _MiB,
                          int(limit * RECOVER_SHARE) // _MiB, STUCK_AFTER)
                self.server.memory_stuck()
            return
        self.pressure = state
        self.shedding = state is Pressure.SHEDDING
        metrics.overload_shedding = 1 if state is Pressure.SHEDDING else 0
        if state is Pressure.SHEDDING:
            metrics.overload_entered += 1
            log.warning("resident memory %d MiB reached limits.max_memory (%d MiB): not accepting connections, "
                        "answering new requests 503 until under %d MiB", resident // _MiB, limit // _MiB,
                        int(limit * RECOVER_SHARE) // _MiB)
            self.server.pause_accepting()
        else:
            log.warning("resident memory %d MiB is under %d MiB again: accepting connections",
                        resident // _MiB, int(limit * RECOVER_SHARE) // _MiB if limit else 0)
            self.server.resume_accepting()

    def _shrink(self) -> int | None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        return self.memory.read()
