"""One way in for every config change: plan, check, apply (style.md point 7).

`submit(candidate)` and `edit_pin(op)` are the only paths to the data path's `apply`
(router.control.port). Each one:

1. validates the candidate in full, in a worker thread, so the loop keeps serving (a
   million-pin table is parsed and checked in slices: router.control.bulk);
2. plans the drop (router.control.guard) and refuses too much unless forced;
3. builds the snapshot and swaps it (DataPath.apply): requests already decided finish on
   the snapshot they began with; pools and health carry over for backends that stay;
4. persists the accepted config as the last known good, and retires the old tables.

A candidate that fails 1, 2 or 3 changes nothing. Changes are serialized by one lock, so
two pushes never interleave. Persisting happens after that lock is released, in a queue
that keeps the order of the swaps (so the journal and lkg.json end as the last swap
left them): writing a million pins takes a quarter of a second, and the next change
should not wait for it. A push waits for its own write (its answer says `persisted`);
the file watcher and the control-plane poller do not. Closing flushes the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from router.config import ConfigError, ValidConfig
from router.errors import format_error
from router.config.schema import Control
from router.control.bulk import busy_worker
from router.control.candidate import Bootstrap, Candidate, prepare
from router.control.guard import DropPlan, plan_drop
from router.control.lkg import JOURNAL_COMPACT, LkgStore, lkg_meta, state_dir_error
from router.control.metrics import ControlMetrics
from router.control.pins import apply_op, check_op, deletes, is_noop
from router.control.port import DataPath, PinEdit
from router.control.reaper import Reaper

log = logging.getLogger("stamp_router.control")

# Outcomes. applied and unchanged are successes.
APPLIED, UNCHANGED, INVALID, UNSAFE = "applied", "unchanged", "invalid", "unsafe"


@dataclass
class ReloadResult:
    outcome: str
    source: str                      # the candidate's kind: file, url, admin, pin
    version: str | None = None
    digest: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    plan: DropPlan | None = None
    seconds: float = 0.0
    persisted: bool | None = None    # None: nothing to persist, or not written yet
    ignored: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.time)
    # Where a full candidate's time went: validate (parse and check, in a worker thread),
    # plan (the drop guard), swap (build the snapshot, load keys, swap). For an operator
    # of a large table asking why a reload took what it took.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in (APPLIED, UNCHANGED)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.outcome, "source": self.source, "at": self.at,
                               "seconds": round(self.seconds, 4)}
        if self.version is not None:
            out.update(version=self.version, digest=self.digest)
        if self.errors:
            out["errors"] = [{"path": p, "message": m} for p, m in self.errors]
        if self.plan is not None:
            out["plan"] = self.plan.as_dict()
        if self.persisted is not None:
            out["persisted"] = self.persisted
        if self.phases:
            out["phases"] = {k: round(v, 4) for k, v in self.phases.items()}
        if self.ignored:
            out["ignored_sections"] = self.ignored
            out["note"] = "listen, admin, control and process come from the local config file"
        return out

    def summary(self) -> str:
        if self.outcome == INVALID:
            return f"{len(self.errors)} error(s): " + "; ".join(format_error(p, m) for p, m in self.errors[:5])
        if self.outcome == UNSAFE and self.plan is not None:
            return "; ".join(self.plan.reasons()) + " (push with force to apply it anyway)"
        return f"version {self.version}"


@dataclass
class Origin:
    """Where the config being served came from, and what was done to it since."""

    digest: str | None = None        # digest of the source content it was taken from
    version: str | None = None       # that content's version label
    edits: int = 0                   # pin pushes since
    lkg: bool = False                # served from the last known good after a failed start


class Reloader:
    def __init__(self, data_path: DataPath, store: LkgStore | None, metrics: ControlMetrics,
                 bootstrap: Callable[[], Bootstrap], reaper: Reaper) -> None:
        self.data_path = data_path
        self.store = store
        self.metrics = metrics
        self._bootstrap = bootstrap
        self.reaper = reaper
        # Shared with the reaper: saves and frees step aside while a candidate is checked.
        self.foreground = reaper.foreground
        self.origin = Origin()
        self.last: ReloadResult | None = None
        self._lock = asyncio.Lock()
        self._persist_tail: asyncio.Task[bool] | None = None
        self._persist_next: dict[str, bool] | None = None   # the tail's: is the write after it whole?
        # The last write failure, logged once: every further one only counts in the metric
        # until a write succeeds (a read-only state_dir would log a line per change).
        self.persist_error: str | None = None
        # Set while no tenant move runs: a full candidate waits for it (router.control.moves).
        self._no_moves = asyncio.Event()
        self._no_moves.set()

    @property
    def current(self) -> ValidConfig:
        return self.data_path.snapshot().valid

    @property
    def settings(self) -> Control:
        return self._bootstrap().control

    # -- a handover to another router (router.process.takeover) ------------------------
    async def hold(self) -> None:
        """Let the change under way finish and its save be written, then take no other
        until release(): the state directory is about to pass to another router."""
        await self._lock.acquire()
        await self.persisted()

    def release(self) -> None:
        self._lock.release()

    @property
    def busy(self) -> bool:
        """A change is being checked or applied now."""
        return self._lock.locked()

    def moves_running(self, count: int) -> None:
        if count:
            self._no_moves.clear()
        else:
            self._no_moves.set()

    # -- full candidates ---------------------------------------------------------------
    async def submit(self, cand: Candidate, *, overlay: bool, wait_persisted: bool = True) -> ReloadResult:
        # A candidate knows nothing of a move's paused pin: it waits for the move to end
        # (each move is bounded by its deadlines) rather than release it half way.
        await self._no_moves.wait()
        async with self._lock:
            with busy_worker(), self.foreground.validating():
                result = await self._submit(cand, overlay, supersedable=not wait_persisted)
        if wait_persisted:
            await self.persisted()
        return result

    async def _submit(self, cand: Candidate, overlay: bool, supersedable: bool) -> ReloadResult:
        started = time.monotonic()
        phases: dict[str, float] = {}
        try:
            valid, ignored = await asyncio.to_thread(prepare, cand, self._bootstrap(), overlay=overlay)
        except ConfigError as exc:
            return self.refuse(ReloadResult(INVALID, cand.kind, errors=exc.errors), started)
        phases["validate"] = time.monotonic() - started
        if valid.digest == self.origin.digest:
            # The source says what it said before (or what the last known good was
            # taken from): pushes made since stay.
            return self._record(ReloadResult(UNCHANGED, cand.kind, version=self.current.version,
                                             digest=self.current.digest, ignored=ignored), started)
        current = self.current
        plan = await asyncio.to_thread(plan_drop, current.pins, valid.pins,
                                       {s.name for s in current.config.stamps},
                                       {s.name for s in valid.config.stamps}, self.settings.max_drop_fraction)
        phases["plan"] = time.monotonic() - started - phases["validate"]
        if plan.unsafe and not cand.force:
            return self.refuse(ReloadResult(UNSAFE, cand.kind, plan=plan, ignored=ignored, phases=phases), started)
        try:
            await self.data_path.apply(valid)
        except ConfigError as exc:
            return self.refuse(ReloadResult(INVALID, cand.kind, errors=exc.errors), started)
        phases["swap"] = time.monotonic() - started - phases["validate"] - phases["plan"]
        result = ReloadResult(APPLIED, cand.kind, version=valid.version, digest=valid.digest,
                              plan=plan, ignored=ignored, phases=phases)
        self._record(result, started)          # with the old origin: it clears the LKG flag
        self.origin = Origin(digest=valid.digest, version=valid.version)
        self._queue_persist(self._saver(valid), result, whole=True, supersedable=supersedable)
        self.reaper.retire(current, valid)
        return result

    async def rebase(self, valid: ValidConfig, source: str) -> ReloadResult:
        """Serve `valid`, derived from the current config without new routing content
        (new bootstrap sections): no guard, same origin."""
        async with self._lock:
            started = time.monotonic()
            try:
                await self.data_path.apply(valid)
            except ConfigError as exc:
                return self.refuse(ReloadResult(INVALID, source, errors=exc.errors), started)
            return self._record(ReloadResult(APPLIED, source, version=valid.version, digest=valid.digest), started)

    # -- single pins -------------------------------------------------------------------
    async def edit_pin(self, op: dict[str, Any], *, force: bool = False) -> ReloadResult:
        async with self._lock:
            result = await self._edit_pin(op, force)
        await self.persisted()
        return result

    async def follow_source(self, op: dict[str, Any], *, source: str, label: str) -> ReloadResult:
        """Pin changes that come from the configured source itself (an etcd watch): the
        pin path, but they are the source's content, not local edits. `label` is the
        version they make (the source's revision)."""
        async with self._lock:
            return await self._edit_pin(op, False, source=source, label=label)

    async def _edit_pin(self, op: dict[str, Any], force: bool, *, source: str = "pin",
                        label: str | None = None) -> ReloadResult:
        started = time.monotonic()
        current = self.current
        try:
            check_op(current, op)
        except ConfigError as exc:
            return self.refuse(ReloadResult(INVALID, source, errors=exc.errors), started)
        if is_noop(current, op):
            return self._record(ReloadResult(UNCHANGED, source, version=current.version,
                                             digest=current.digest), started)
        origin = self.origin
        base = origin.version or current.version
        valid = await asyncio.to_thread(apply_op, current, op, base_version=base, edits=origin.edits + 1, label=label)
        if op["op"] == "batch":
            # A batch can empty the table as surely as a bad config: the same guard.
            stamps = len(current.config.stamps)
            plan = DropPlan(pins_before=len(current.pins), pins_after=len(valid.pins),
                            pins_dropped=deletes(current, op), stamps_before=stamps, stamps_after=stamps,
                            stamps_dropped=0, max_fraction=self.settings.max_drop_fraction)
            if plan.unsafe and not force:
                return self.refuse(ReloadResult(UNSAFE, source, plan=plan), started)
        try:
            await self.data_path.apply(valid, PinEdit(op, base, origin.edits + 1, label))
        except ConfigError as exc:
            return self.refuse(ReloadResult(INVALID, source, errors=exc.errors), started)
        if label is None:
            origin.edits += 1
        else:
            # The source moved on: a full read of it compares against what is served now.
            origin.digest, origin.version = valid.digest, valid.version
        result = self._record(ReloadResult(APPLIED, source, version=valid.version, digest=valid.digest), started)
        self._queue_persist(self._op_saver(valid, op), result)
        self.reaper.retire(current, valid)
        return result

    # -- bookkeeping -------------------------------------------------------------------
    def _record(self, result: ReloadResult, started: float) -> ReloadResult:
        result.seconds = time.monotonic() - started
        self.last = result
        self.metrics.reload(result.source, True)
        if result.source != "pin" and self.origin.lkg:   # a source answered: no longer a fallback
            log.info("the %s answered with a valid config: no longer serving the last known good as a fallback",
                     result.source)
            self.origin.lkg = False
            self.metrics.lkg_in_use.set(0)
        if result.outcome == APPLIED:
            self.metrics.reload_seconds.set(result.seconds)
            took = ", ".join(f"{k} {v:.3f}s" for k, v in result.phases.items())
            log.info("config %s from %s: %s in %.3fs%s", result.outcome, result.source, result.summary(),
                     result.seconds, f" ({took})" if took else "")
        return result

    def refuse(self, result: ReloadResult, started: float | None = None) -> ReloadResult:
        result.seconds = time.monotonic() - started if started is not None else 0.0
        self.last = result
        self.metrics.reload(result.source, False)
        log.warning("config from %s rejected (%s), still serving %s: %s", result.source, result.outcome,
                    self.current.version, result.summary())
        for path, message in result.errors:
            log.warning("  %s", format_error(path, message))
        return result

    # -- the last known good -------------------------------------------------------------
    async def persist(self, valid: ValidConfig) -> bool:
        """Save `valid` as the last known good, after every save queued before it."""
        return await self._queue_persist(self._saver(valid), whole=True)

    async def persisted(self) -> None:
        """Wait until every save queued so far is done (or failed: that is logged and counted)."""
        tail = self._persist_tail
        if tail is not None:
            await asyncio.wait([tail])

    def _queue_persist(self, write: Callable[[], Awaitable[bool]], result: ReloadResult | None = None, *,
                       whole: bool = False, supersedable: bool = False) -> asyncio.Task[bool]:
        """Queue a write behind the ones queued before it.

        A `supersedable` whole save (one nobody waits for: the watcher's, the poller's) is
        skipped when, by its turn, the next write queued is a whole save too: that one
        holds everything this one would have written, and under a stream of changes the
        queue would otherwise grow by a million-pin config per change. Its result keeps
        `persisted` None. A journal line queued right behind it needs its base on disk,
        so then it is written.
        """
        previous = self._persist_tail
        if self._persist_next is not None:
            self._persist_next["whole"] = whole
        mine: dict[str, bool] = {}
        self._persist_next = mine

        async def run() -> bool:
            if previous is not None:
                await asyncio.wait([previous])
            if supersedable and mine.get("whole"):
                if self.store is not None:
                    self.metrics.lkg_superseded.inc()
                return True
            try:
                ok = await write()
            except OSError as exc:
                self.metrics.lkg_write_errors.inc()
                message = state_dir_error(self.store.dir, exc) if self.store is not None else str(exc)
                if message != self.persist_error:
                    log.error("%s", message)
                self.persist_error = message
                ok = False
            except Exception:  # noqa: BLE001 - a failed write must not stop the ones queued after it
                self.metrics.lkg_write_errors.inc()
                log.exception("persisting the last known good failed")
                ok = False
            if ok and self.persist_error is not None and self.store is not None:
                log.info("control.state_dir %s: the last known good config is kept again", self.store.dir)
                self.persist_error = None
            if result is not None:
                result.persisted = ok
            return ok

        self._persist_tail = task = asyncio.get_running_loop().create_task(run())
        return task

    def _saver(self, valid: ValidConfig) -> Callable[[], Awaitable[bool]]:
        """The write of `valid` as a whole: True once written, False with no store."""
        # What the file records about where the config came from is taken now, at the swap:
        # by the time the write runs, a later change may have moved the origin on.
        meta = lkg_meta(valid, self.origin.digest, self.origin.version, self.origin.edits)

        async def save() -> bool:
            if self.store is None:
                return False
            with busy_worker():
                await asyncio.to_thread(self.store.save, meta, valid.document, valid.pins, valid.modes,
                                        step_aside=self.foreground.background(), pins_json=valid.pins_json)
            return True
        return save

    def _op_saver(self, valid: ValidConfig, op: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
        """The write of one pin push: a journal line, or the whole config when due."""
        save_whole = self._saver(valid)

        async def append() -> bool:
            store = self.store
            if store is None:
                return False
            if store.journal_lines >= JOURNAL_COMPACT or not store.has_base:
                return await save_whole()
            await asyncio.to_thread(store.append, op)
            return True
        return append
