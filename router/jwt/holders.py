"""Key holders: one per key source (a JWKS URL, a JWKS file, a secret file), each keeping
a KeyRef fresh in the background.

Rules every holder keeps:

- The first load happens before a config that needs it is accepted (JwtRuntime.prepare);
  a holder exists only once it has keys.
- A failed refresh changes nothing: the keys held keep verifying, the failure is counted
  (stamp_router_jwks_refresh_total{result="error"}) and shown in status.
- New keys replace the old in one assignment, so a rotation needs no restart and no new
  snapshot: every jwt source reads `keyref.current` per token.
- An unknown kid wakes the holder for an early refresh at most once per
  `unknown_kid_refetch` (30 s by default), so a flood of made-up kids cannot turn into a
  flood of requests to the identity provider.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Callable

from router.core.jwt_keys import KeyRef, KeySet
from router.jwt.keyfiles import KeyLoadError, read_key_file
from router.jwt.metrics import JwtMetrics
from router.jwt.tasks import Tasks

if TYPE_CHECKING:
    from router.config.schema import Jwt

log = logging.getLogger("router.jwt")
# How often a key file is checked (one stat) for changes; a changed file is read again.
FILE_POLL_SECONDS = 5.0
# After a failed refresh the next try comes sooner than the normal interval: 5 s, doubling,
# up to jwks_min_refresh (never later than the normal interval).
FAILURE_RETRY_FIRST = 5.0


class Unchanged:
    """A refresh that found the keys as they were (HTTP 304, a file not modified)."""

    def __init__(self, counted: bool) -> None:
        self.counted = counted   # whether it counts as a successful refresh in metrics


class KeyHolder:
    kind = ""

    def __init__(self, location: str, jwt: "Jwt", metrics: JwtMetrics,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.location = location
        self.label = f"{self.kind} {location}"
        self.jwt = jwt
        self.keyref = KeyRef()
        self.metrics = metrics
        self.clock, self.wall = clock, wall
        self.next_delay = jwt.jwks_refresh
        self.next_at: float | None = None      # wall time the refresher wakes next
        self.failures = 0
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.last_result = "never loaded"
        self._last_kid_refetch: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # Told of every new key set (the supervisor sends it to its workers); and what an
        # unknown kid wakes (in a worker: a message asking the supervisor to refetch).
        self.on_keys: Callable[[KeyHolder], None] | None = None
        self.wake: Callable[[], None] = self._wake.set

    # -- what subclasses provide

    async def fetch(self) -> KeySet | Unchanged:
        raise NotImplementedError

    def delay_after_success(self) -> float:
        raise NotImplementedError

    # -- lifecycle

    def configure(self, jwt: "Jwt") -> None:
        """Take the refresh settings of a newly prepared config for this same source."""
        self.jwt = jwt

    async def load(self) -> None:
        """The first load; raises KeyLoadError when no keys could be had."""
        if not await self.refresh() and not await self.fallback():
            raise KeyLoadError(f"jwt.{self.kind}", self.last_result.removeprefix("error: "))

    async def fallback(self) -> bool:
        """Keys from somewhere other than the source, when a first load failed (subclasses)."""
        return False

    def start(self, tasks: Tasks) -> None:
        if self._task is None:
            self._task = tasks.spawn(self._run(), name=f"jwt keys: {self.label}")

    def verify_only(self, wake: Callable[[], None]) -> None:
        """In a forked worker: the refresher task is the supervisor's (never cancel it from
        here), and an unknown kid calls `wake`, which asks the supervisor."""
        self._task = None
        self.on_keys = None
        self.wake = wake

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            # Not asyncio.wait_for: on 3.11 it swallows a cancel that arrives as the wake-up
            # completes, and the refresher would outlive close().
            try:
                async with asyncio.timeout(self.next_delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.refresh()

    async def refresh(self) -> bool:
        """One refresh now; True when keys are held afterwards and this attempt did not fail."""
        self.last_attempt = self.wall()
        try:
            result = await self.fetch()
        except KeyLoadError as exc:
            return self._failed(exc.message)
        except Exception as exc:  # a bug or an odd library error must not end the refresher
            log.exception("jwt keys: refresh of %s failed unexpectedly", self.label)
            return self._failed(f"{type(exc).__name__}: {exc}")
        self.failures = 0
        if isinstance(result, Unchanged):
            if result.counted:
                self._succeeded("not_modified")
        else:
            self.keyref.current = result
            if self.on_keys is not None:
                self.on_keys(self)
            self.metrics.keys.labels(self.label).set(len(result.keys))
            self._succeeded("ok")
            for reason in result.skipped:
                log.warning("jwt keys: %s: skipped %s", self.label, reason)
        self._schedule(self.delay_after_success())
        return True

    def _schedule(self, delay: float) -> None:
        self.next_delay = delay
        self.next_at = self.wall() + delay

    def _succeeded(self, result: str) -> None:
        self.last_success = self.last_attempt
        self.last_result = result
        self.metrics.refreshes.labels(self.label, result).inc()
        self.metrics.last_success.labels(self.label).set(self.last_success)

    def _failed(self, message: str) -> bool:
        self.failures += 1
        self.last_result = f"error: {message}"
        self.metrics.refreshes.labels(self.label, "error").inc()
        held = "keeping the keys held" if self.keyref.current is not None else "no keys held"
        log.warning("jwt keys: %s: %s (%s)", self.label, message, held)
        normal = self.delay_after_success()
        self._schedule(min(normal, self.jwt.jwks_min_refresh, FAILURE_RETRY_FIRST * 2 ** min(self.failures - 1, 16)))
        return False

    # -- called from the request path (the jwt source), so it must stay cheap and sync

    def on_unknown_kid(self, kid: str) -> None:
        self.metrics.unknown_kid.labels(self.label).inc()
        now = self.clock()
        last = self._last_kid_refetch
        if last is not None and now - last < self.jwt.unknown_kid_refetch:
            return
        self._last_kid_refetch = now
        self.metrics.refetches.labels(self.label).inc()
        self.wake()

    def status(self) -> dict:
        keys = self.keyref.current
        return {
            "kind": self.kind,
            "location": self.location,
            "keys": [k.public_info() for k in keys.keys] if keys else [],
            "skipped": list(keys.skipped) if keys else [],
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "last_result": self.last_result,
            "consecutive_failures": self.failures,
            "next_refresh_at": self.next_at,
        }


class FileKeys(KeyHolder):
    """A jwks_file or secret_file, read again whenever it changes on disk."""

    def __init__(self, kind: str, path: str, jwt: "Jwt", metrics: JwtMetrics, **kw) -> None:
        self.kind = kind
        super().__init__(path, jwt, metrics, **kw)
        self._seen: tuple | None = None

    async def fetch(self) -> KeySet | Unchanged:
        try:
            st = os.stat(self.location)
        except OSError as exc:
            raise KeyLoadError(f"jwt.{self.kind}", f"cannot read {self.location}: {exc.strerror}") from None
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen == self._seen and self.keyref.current is not None:
            return Unchanged(counted=False)
        keys = await asyncio.to_thread(read_key_file, self.kind, self.location, self.jwt)
        self._seen = seen
        return keys

    def delay_after_success(self) -> float:
        return FILE_POLL_SECONDS
