"""POST /tenants/{id}/move on one router: the thin shell around router.core.move.

Each step is carried out here and its outcome fed to the state table, which says what
comes next: pin pushes (the pause, the flip, a rollback) go through the reloader like any
pin push, so they are answered once every worker serves them and persisted to the last
known good; the drain asks the workers for the tenant's work in flight until none is
left on any stamp; the hook is router.control.hook. The move is a task of its own: a
client that stops waiting for the answer does not stop it.

While a move runs, a full config change (file, control plane, PUT /config) waits for it
to end: the candidate knows nothing of the paused pin and would release the held
requests to the old stamp in the middle of the move. Pin pushes for the moving tenant
are refused (409); other tenants' pins are not held up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from router.control.hook import HookFailed, run_hook
from router.control.pins import pin_op
from router.control.port import DataPath
from router.control.reloader import Reloader
from router.core.decision import PAUSED
from router.core.move import (Event, Move, MoveRefused, Outcome, Pin, Step, Strategy, advance, begin,
                              check_move)

log = logging.getLogger("stamp_router.move")

# How often the drain step asks the workers for the tenant's work in flight.
DRAIN_POLL = 0.02
# Finished moves kept for GET /tenants/{id}, the latest per tenant.
KEEP_FINISHED = 1000


class Moves:
    def __init__(self, reloader: Reloader, data_path: DataPath, registry: CollectorRegistry,
                 spawn: Callable[[Any], asyncio.Task], *, pins_elsewhere: bool = False) -> None:
        self.reloader = reloader
        self.pins_elsewhere = pins_elsewhere        # etcd holds the pins: a push goes there, for every router
        self.data_path = data_path
        self.spawn = spawn
        self.running: dict[str, Move] = {}
        self.finished: OrderedDict[str, Move] = OrderedDict()
        self._tasks: dict[str, asyncio.Task] = {}
        self.outcomes = Counter("stamp_router_moves", "Tenant moves by outcome (completed, rolled_back, failed).",
                                ["outcome"], registry=registry)
        for outcome in Outcome:
            self.outcomes.labels(outcome.value)
        self.moving = Gauge("stamp_router_moves_in_progress", "Tenant moves running now.", registry=registry)

    def is_moving(self, tenant: str) -> bool:
        return tenant in self.running

    def latest(self, tenant: str) -> Move | None:
        return self.running.get(tenant) or self.finished.get(tenant)

    # -- beginning ----------------------------------------------------------------------
    def start(self, tenant: str, target: str, strategy: Strategy, timeout: float | None,
              cross_residency: bool = False, close_tunnels: bool = False) -> asyncio.Task:
        """Check the move and start it; MoveRefused (with its status) if it cannot begin."""
        if tenant in self.running:
            move = self.running[tenant]
            raise MoveRefused(409, f"tenant {tenant!r} is being moved already ({move.source} -> {move.target}, "
                                   f"step {move.step.value})")
        if self.pins_elsewhere:
            raise MoveRefused(409, "the pins come from etcd (control.etcd), shared by every router: a move on one "
                                   "router cannot hold the others; not supported with etcd yet")
        if self.reloader.busy:
            raise MoveRefused(409, "a config change is being applied; send the move again when it is done")
        if self.data_path.reforking():
            # The workers holding the paused requests would drain half way through the move.
            raise MoveRefused(409, "the workers are being forked again (a large pin table rebuilt after a reload); "
                                   "send the move again in a few seconds")
        snap = self.data_path.snapshot()
        valid = snap.valid
        pinned = valid.pins.get(tenant)
        mode = valid.modes.get(tenant, "read-write")
        if pinned is not None:
            current = pinned
        elif snap.residency is not None:
            raise MoveRefused(409, f"tenant {tenant!r} has no pin, and where it is placed depends on each request's "
                                   "residency: pin it first (PUT /tenants/{id}), then move it")
        else:
            current = snap.placement.lookup(tenant) if snap.unpinned == "hash" else None
        if mode == PAUSED:
            raise MoveRefused(409, f"tenant {tenant!r} is paused: set its pin's mode back first")
        check_move(tenant, target, current, {name: s.residency for name, s in snap.stamps.items()},
                   cross_residency=cross_residency)
        move = begin(tenant, current, target, strategy, Pin(pinned, mode),
                     timeout=timeout if timeout is not None else snap.config.migration.timeout, now=time.time(),
                     close_tunnels=close_tunnels)
        self.running[tenant] = move
        self.reloader.moves_running(len(self.running))
        self.moving.set(len(self.running))
        log.info("move of tenant %r from %s to %s (%s) begins, deadline in %.1fs", tenant, move.source, move.target,
                 strategy.value, move.deadline - move.started)
        task = self._tasks[tenant] = self.spawn(self._run(move))
        return task

    # -- carrying out -------------------------------------------------------------------
    async def _run(self, move: Move) -> Move:
        tenant = move.tenant
        try:
            while move.moving:
                step = move.step
                began = time.monotonic()
                event, detail = await self._carry_out(move)
                move = advance(move, event, time.time(), detail)
                self.running[tenant] = move
                log.log(logging.INFO if event is Event.OK else logging.WARNING,
                        "move of tenant %r: %s %s in %.3fs%s", tenant, step.value, event.value,
                        time.monotonic() - began, f" ({detail})" if detail else "")
            return move
        finally:
            self.running.pop(tenant, None)
            self._tasks.pop(tenant, None)
            self.finished[tenant] = move
            self.finished.move_to_end(tenant)
            while len(self.finished) > KEEP_FINISHED:
                self.finished.popitem(last=False)
            self.reloader.moves_running(len(self.running))
            self.moving.set(len(self.running))
            if move.outcome is not None:
                self.outcomes.labels(move.outcome.value).inc()
                (log.info if move.outcome is Outcome.COMPLETED else log.error)(
                    "move of tenant %r from %s to %s: %s%s", tenant, move.source, move.target, move.outcome.value,
                    f" ({move.error})" if move.error else "")

    async def _carry_out(self, move: Move) -> tuple[Event, str]:
        step = move.step
        try:
            return await asyncio.wait_for(self._step(move), move.until(time.time()))
        except asyncio.TimeoutError:
            return Event.TIMED_OUT, f"the move's deadline passed during {step.value}"
        except HookFailed as exc:
            return Event.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a fault here must roll back, not leave the tenant paused
            log.exception("move of tenant %r: %s failed unexpectedly", move.tenant, step.value)
            return Event.FAILED, f"{type(exc).__name__}: {exc}"

    async def _step(self, move: Move) -> tuple[Event, str]:
        tenant = move.tenant
        if move.step is Step.PAUSE:
            return await self._push(pin_op(tenant, move.source, move.mode))
        if move.step is Step.DRAIN:
            writes_only = move.strategy is Strategy.READ_ONLY
            polls = 0
            work = await self.data_path.tenant_work(tenant, close_tunnels=move.close_tunnels)
            while work.busy(writes_only):
                polls += 1
                await asyncio.sleep(DRAIN_POLL)
                work = await self.data_path.tenant_work(tenant)
            return Event.OK, f"nothing{' written' if writes_only else ''} in flight after {polls} poll(s)"
        if move.step is Step.HOOK:
            return Event.OK, await run_hook(self.data_path.snapshot().config.migration, tenant, move.source,
                                            move.target)
        if move.step is Step.FLIP:
            return await self._push(pin_op(tenant, move.target, move.flipped.mode))
        if move.step is Step.ROLLBACK:
            return await self._push(pin_op(tenant, move.prior.stamp, move.prior.mode if move.prior.stamp else None))
        raise AssertionError(f"no step {move.step}")

    async def _push(self, op: dict[str, Any]) -> tuple[Event, str]:
        result = await self.reloader.edit_pin(op)
        if result.ok:
            return Event.OK, f"version {result.version}"
        return Event.FAILED, "; ".join(m for _, m in result.errors) or result.outcome

    async def close(self) -> None:
        """Shutting down: let running moves end (each is bounded by its deadlines)."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks)
