"""Free the tables of a replaced config off the event loop thread.

When the last request holding an old snapshot finishes, CPython frees its million-entry
pin dict on the spot, in one C call, on the loop thread: tens of milliseconds during which
no request moves. The reaper keeps its own reference to each large table of a retired
config, waits until that is the only one left (every request that began on the old
snapshot is done), then empties it in a worker thread one entry at a time
(router.control.bulk.drain), so the final free is cheap.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from types import MappingProxyType
from typing import Any, Callable, Coroutine

from router.control.bulk import busy_worker, drain
from router.control.foreground import Foreground
from router.core.pin_table import PinTable

log = logging.getLogger("stamp_router.control")

# Tables smaller than this are freed where they fall: it takes well under a millisecond.
MIN_ENTRIES = 50_000
POLL = 0.25
# A request that holds an old snapshot longer than this (a long stream) frees it itself.
GIVE_UP = 600.0


def large_tables(valid: Any) -> list[dict]:
    """The dicts of a ValidConfig worth reaping: its pins (the base under pushed pins) and
    an inline tenants table."""
    out = []
    for table in (valid.pins, valid.document.get("tenants") if hasattr(valid.document, "get") else None):
        if isinstance(table, PinTable):
            table = table.base
        if isinstance(table, MappingProxyType):
            # A mapping proxy hides its dict; gc sees it as the proxy's one referent.
            table = next((r for r in gc.get_referents(table) if type(r) is dict), None)
        if type(table) is dict and len(table) >= MIN_ENTRIES:
            out.append(table)
    return out


class Reaper:
    def __init__(self, spawn: Callable[[Coroutine], asyncio.Task], foreground: Foreground | None = None) -> None:
        self._spawn = spawn
        # Freeing can wait: it steps aside while a candidate is being validated.
        self.foreground = foreground or Foreground()
        self.reaped = 0
        self.waits = 0

    def retire(self, valid: Any, successor: Any = None) -> None:
        """Reap the large tables of `valid` once no request holds them, but not those its
        `successor` shares (the base of a PinTable after a pin push)."""
        kept = {id(t) for t in large_tables(successor)} if successor is not None else set()
        for table in large_tables(valid):
            if id(table) not in kept:
                self._spawn(self._reap([table]))

    async def _reap(self, holder: list[dict]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP
        # Two references while ours is the last: `holder` and getrefcount's argument.
        while sys.getrefcount(holder[0]) > 2:
            if loop.time() > deadline:
                return
            self.waits += 1
            await asyncio.sleep(POLL)
        table = holder.pop()
        try:
            with busy_worker():
                await asyncio.to_thread(drain, table, self.foreground.background())
            self.reaped += 1
        except Exception:  # noqa: BLE001 - freeing memory must never take the router down
            log.exception("reaping a retired pin table failed")
