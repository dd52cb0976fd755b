"""A reload being validated comes first; background table work steps aside for it.

Everything a reload does in Python shares one GIL with the data path. After a million-pin
swap, two pieces of background work follow it: writing the last known good (a quarter of
a second of serializing) and freeing the old table (a million deallocations). When the
next change arrives right behind (a control plane publishing twice in a row), both ran
beside the new candidate's validation and took GIL turns from it: measured on the 2-core
test machine, validation went from 0.9 s of thread CPU in 1.1 s to the same CPU in 2.0 s.

So the worker threads doing that background work call `step_aside()` between slices.
While a candidate is being validated, that blocks (without the GIL) until validation is
over, up to a bound per job: under a stream of changes the background work still gets
done, only later, and the queue of saves collapses to the newest (reloader).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

# How long one background job may be held back in all. Past it, the job goes on beside
# validation as before: a long stream of back-to-back changes must not keep old tables
# in memory, or the last known good on disk stale, without end.
MAX_DEFER = 3.0


class Foreground:
    def __init__(self, max_defer: float = MAX_DEFER) -> None:
        self.max_defer = max_defer
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._active = 0
        self.deferred_seconds = 0.0     # in all, for tests and the curious

    @contextmanager
    def validating(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def background(self) -> Callable[[], None]:
        """A `step_aside` for one background job (its own defer budget); call it between
        slices from a worker thread, never from the event loop thread."""
        budget = [self.max_defer]

        def step_aside() -> None:
            if self._idle.is_set() or budget[0] <= 0:
                return
            began = time.monotonic()
            self._idle.wait(budget[0])
            waited = time.monotonic() - began
            budget[0] -= waited
            with self._lock:
                self.deferred_seconds += waited
        return step_aside
