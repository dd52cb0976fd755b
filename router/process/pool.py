"""The supervisor's workers: forked, watched, replaced, told what changed.

A worker slot is one place in the pool (`[process] workers` of them). Its worker is
replaced when it dies: at once the first time, then with a doubling delay while it keeps
dying (CRASH_WINDOW), which /readyz and the metrics show. A new generation (a full
config change, a takeover) is a whole new set of workers forked from the supervisor
holding the new snapshot; once every one of them accepts, the old set is told to drain.
No worker ever parses a table, and the listening sockets stay open in the supervisor
throughout, so nothing is refused while workers come and go.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from router.process.messages import Channel, ChannelClosed, Kind, Message
from router.process.reports import ReportHandler, ReportKind
from router.process.worker import WorkerSpec, run_worker

log = logging.getLogger("stamp_router.supervisor")

# A worker that does not accept this long after its fork has failed to start.
READY_TIMEOUT = 30.0
# A pin edit not acknowledged in this time: the worker is stuck, and is replaced.
PUSH_TIMEOUT = 10.0
# How long a new generation waits for the old one to say it accepts no more; a worker
# that does not say so in time drains all the same, it is only not waited for.
DRAIN_ACK_TIMEOUT = 5.0
# Deaths within this window count as one crash loop; from the third on, restarts wait.
CRASH_WINDOW = 60.0
CRASH_LOOP_DEATHS = 3
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


class SlotState(enum.StrEnum):
    STARTING = "starting"      # forked, not accepting yet
    SERVING = "serving"
    BACKOFF = "backoff"        # died again soon after its last restart: waiting before the next
    STOPPED = "stopped"


class WorkersFailed(Exception):
    """A new set of workers did not start: the ones serving keep serving."""


@dataclass(eq=False)
class WorkerProc:
    slot: int
    generation: int
    pid: int
    pidfd: int
    channel: Channel
    channel_fd: int
    started: float
    ready: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    exited: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(eq=False)
class Slot:
    index: int
    state: SlotState = SlotState.STARTING
    worker: WorkerProc | None = None
    restarts: int = 0
    deaths: deque = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_DEATHS + 1))
    last_exit: str | None = None


class WorkerPool:
    def __init__(self, spec_for: Callable[[int, int], WorkerSpec], handlers: dict[ReportKind, ReportHandler],
                 on_exit: Callable[[int], None], registry: CollectorRegistry) -> None:
        self._spec_for = spec_for                # (slot, generation) -> what a new worker serves
        self._handlers = handlers
        self._on_exit = on_exit                  # (pid): the worker's counters are final
        self.slots: list[Slot] = []
        self.procs: set[WorkerProc] = set()      # every worker alive, of any generation
        self.generation = 0
        self.stopping = False
        self._tasks: set[asyncio.Task] = set()
        registry.register(_PoolCollector(self))

    # -- forking ------------------------------------------------------------------------
    def _fork(self, slot: int, generation: int) -> WorkerProc:
        spec = self._spec_for(slot, generation)
        ours, theirs = socket.socketpair()
        # The child closes the supervisor's ends of every other worker's channel: else a
        # worker would hold its siblings' channels open after the supervisor is gone.
        inherited = [p.channel_fd for p in self.procs if p.channel_fd >= 0] + [p.pidfd for p in self.procs]
        pid = os.fork()
        if pid == 0:                              # the worker; never returns
            ours.close()
            for fd in inherited:
                try:
                    os.close(fd)
                except OSError:
                    pass
            run_worker(spec, theirs)
        theirs.close()
        loop = asyncio.get_running_loop()
        proc = WorkerProc(slot, generation, pid, os.pidfd_open(pid), Channel(ours), ours.fileno(), time.monotonic())
        self.procs.add(proc)
        loop.add_reader(proc.pidfd, self._reap, proc)
        self._spawn(self._talk(proc))
        return proc

    async def _talk(self, proc: WorkerProc) -> None:
        await proc.channel.serve(lambda kind, msg: self._on_message(proc, kind, msg))
        proc.channel_fd = -1

    def _on_message(self, proc: WorkerProc, kind: Kind, msg: Message) -> None:
        if kind is Kind.READY:
            if not proc.ready.done():
                proc.ready.set_result(True)
            slot = self.slots[proc.slot] if proc.slot < len(self.slots) else None
            if slot is not None and slot.worker is proc:
                slot.state = SlotState.SERVING
        elif kind is Kind.REPORT:
            for name, payload in msg["r"].items():
                handler = self._handlers.get(ReportKind(name))
                if handler is not None:
                    handler(proc.pid, payload)

    def _reap(self, proc: WorkerProc) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(proc.pidfd)
        os.close(proc.pidfd)
        _, status = os.waitpid(proc.pid, 0)
        self.procs.discard(proc)
        how = _describe(status)
        if not proc.ready.done():
            proc.ready.set_exception(WorkersFailed(f"worker {proc.slot} (pid {proc.pid}) {how} before it was ready"))
            proc.ready.exception()        # retrieved: a caller may not be waiting any more
        proc.exited.set_result(status)
        self._on_exit(proc.pid)
        slot = self.slots[proc.slot] if proc.slot < len(self.slots) else None
        if slot is None or slot.worker is not proc:
            log.info("worker %d of generation %d (pid %d) %s", proc.slot, proc.generation, proc.pid, how)
            return                          # an old generation's, or a failed start's
        slot.worker = None
        slot.last_exit = how
        if self.stopping:
            slot.state = SlotState.STOPPED
            return
        now = time.monotonic()
        slot.deaths.append(now)
        recent = sum(1 for t in slot.deaths if now - t < CRASH_WINDOW)
        delay = 0.0 if recent < CRASH_LOOP_DEATHS else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (recent - CRASH_LOOP_DEATHS))
        log.warning("worker %d (pid %d) %s; %s", proc.slot, proc.pid, how,
                    "replacing it" if not delay else f"died {recent} times in {CRASH_WINDOW:.0f}s, replacing it in {delay:.1f}s")
        slot.state = SlotState.BACKOFF if delay else SlotState.STARTING
        self._spawn(self._restart(slot, delay))

    async def _restart(self, slot: Slot, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self.stopping or slot.worker is not None:
            return
        slot.restarts += 1
        slot.state = SlotState.STARTING
        slot.worker = self._fork(slot.index, self.generation)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- generations --------------------------------------------------------------------
    async def start_generation(self, count: int) -> None:
        """Fork `count` workers serving what spec_for gives now; once all accept, drain
        the ones serving before. WorkersFailed (and the old ones untouched) if not."""
        generation = self.generation + 1
        procs = [self._fork(i, generation) for i in range(count)]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.ready for p in procs)), READY_TIMEOUT)
        except (WorkersFailed, asyncio.TimeoutError) as exc:
            for p in procs:
                _kill(p.pid)
            raise WorkersFailed(str(exc) or f"the new workers did not start within {READY_TIMEOUT:.0f}s") from None
        old_slots = self.slots
        self.slots = [Slot(i, SlotState.SERVING, p, restarts=old_slots[i].restarts if i < len(old_slots) else 0)
                      for i, p in enumerate(procs)]
        self.generation = generation
        # Returns once the old generation accepts no more (or could not say so in time):
        # from then on every new connection is the new generation's.
        old = [p for p in self.procs if p.generation < generation and not p.channel.closed]
        await asyncio.gather(*(p.channel.request(Kind.DRAIN, DRAIN_ACK_TIMEOUT) for p in old), return_exceptions=True)

    def _tell(self, proc: WorkerProc, kind: Kind, **body: Any) -> None:
        try:
            proc.channel.send(kind, **body)
        except ChannelClosed:
            pass

    # -- telling workers ------------------------------------------------------------------
    def current(self) -> list[WorkerProc]:
        return [s.worker for s in self.slots if s.worker is not None]

    def tell(self, pid: int, kind: Kind, **body: Any) -> None:
        for proc in self.procs:
            if proc.pid == pid:
                self._tell(proc, kind, **body)

    def broadcast(self, kind: Kind, **body: Any) -> None:
        """To every worker alive (an old generation still draining routes by it too)."""
        for proc in list(self.procs):
            self._tell(proc, kind, **body)

    async def ask_all(self, kind: Kind, timeout: float = PUSH_TIMEOUT, **body: Any) -> dict[int, Message]:
        """Ask every worker of the current generation; one that does not answer in time is
        killed (and replaced from the supervisor's current state). pid -> answer."""
        procs = [p for p in self.current() if not p.channel.closed]
        answers = await asyncio.gather(*(p.channel.request(kind, timeout, **body) for p in procs),
                                       return_exceptions=True)
        out = {}
        for proc, answer in zip(procs, answers):
            if isinstance(answer, BaseException):
                if not isinstance(answer, ChannelClosed):
                    log.error("worker %d (pid %d) did not answer %s in %.0fs: replacing it", proc.slot, proc.pid,
                              kind, timeout)
                    _kill(proc.pid)
                continue
            out[proc.pid] = answer
        return out

    async def ask_every(self, kind: Kind, timeout: float, **body: Any) -> tuple[list[Message], int]:
        """Ask every worker alive, of any generation (one draining still has requests in
        flight), and kill none: (answers, how many did not answer)."""
        procs = [p for p in self.procs if not p.channel.closed]
        answers = await asyncio.gather(*(p.channel.request(kind, timeout, **body) for p in procs),
                                       return_exceptions=True)
        got = [a for a in answers if not isinstance(a, BaseException)]
        return got, len(answers) - len(got)

    async def stop(self, timeout: float) -> None:
        """Drain every worker; kill what is left after `timeout`."""
        self.stopping = True
        procs = list(self.procs)
        for proc in procs:
            self._tell(proc, Kind.DRAIN)
        if procs:
            _, late = await asyncio.wait([p.exited for p in procs], timeout=timeout)
            for proc in procs:
                if not proc.exited.done():
                    _kill(proc.pid)
            if late:
                await asyncio.wait(late, timeout=5.0)
        for task in list(self._tasks):
            task.cancel()

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        workers = [{"worker": s.index, "state": s.state.value, "pid": s.worker.pid if s.worker else None,
                    "restarts": s.restarts, "generation": s.worker.generation if s.worker else None,
                    "crashes_recent": sum(1 for t in s.deaths if now - t < CRASH_WINDOW),
                    "last_exit": s.last_exit} for s in self.slots]
        serving = sum(1 for s in self.slots if s.state is SlotState.SERVING)
        looping = [w["worker"] for w in workers if w["crashes_recent"] >= CRASH_LOOP_DEATHS]
        # Ready while some worker accepts and none is in a crash loop: a loop means every
        # worker may soon be in one, and an operator should look before traffic comes.
        return {"ok": serving > 0 and not looping, "serving": serving, "configured": len(self.slots),
                "crash_looping": looping, "workers": workers}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"was killed by {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"was killed by signal {sig}"
    return f"exited with {os.WEXITSTATUS(status)}"


class _PoolCollector(Collector):
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("stamp_router_worker_up", "1 while the worker in this slot accepts connections.",
                               labels=["worker"])
        restarts = CounterMetricFamily("stamp_router_worker_restarts", "Workers started in this slot to replace "
                                       "one that died.", labels=["worker"])
        for slot in self.pool.slots:
            up.add_metric([str(slot.index)], 1 if slot.state is SlotState.SERVING else 0)
            restarts.add_metric([str(slot.index)], slot.restarts)
        yield up
        yield restarts
        yield GaugeMetricFamily("stamp_router_workers_generation", "Worker generations started (each full config "
                                "change starts one).", value=self.pool.generation)
