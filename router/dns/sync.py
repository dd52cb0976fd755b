"""One sync pass, and the loop that runs one every `interval`.

A pass: read the registry (a failure or an empty registry ends the pass, changing
nothing) -> move the hysteresis on -> compute the desired sets -> read the zone -> plan
-> check (provider rules, max_change_fraction unless --force) -> apply, which reads the
writes back. A dry run stops before apply and writes nothing anywhere: not the zone, not
the state file (its hysteresis step is a preview), not the metrics textfile. A compare-and-set conflict re-reads the zone and plans again, a few times.

Every pass ends in one PassResult, whatever went wrong: the loop never dies on a bad
pass, and metrics and the exit code come from that one value.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from router.dns import hysteresis
from router.dns.desired import desired_sets
from router.dns.errors import ConflictError, DnsError, PlanInvalid, PlanRefused
from router.dns.counts import Counts, FileCounts, ProcessCounts
from router.dns.model import Registry
from router.dns.plan import Change, Limits, Plan, build_plan

log = logging.getLogger("stamp_router.dns")

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True)
class PassResult:
    result: str                      # one of metrics.RESULTS
    plan: Plan | None = None
    applied: tuple[Change, ...] = ()
    message: str = ""

    @property
    def exit_code(self) -> int:
        if self.result in ("ok", "dry_run"):
            return EXIT_OK
        return EXIT_REFUSED if self.result == "refused" else EXIT_ERROR


class Updater:
    def __init__(self, cfg, provider, registry, *, metrics=None, out: TextIO | None = None,
                 clock: Callable[[], float] = time.time, always_print: bool = False,
                 counts: Counts | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        self.registry = registry
        self.metrics = metrics
        self.out = out or sys.stdout
        self.clock = clock
        self.always_print = always_print
        self.limits = Limits(cfg.sync.max_change_fraction, cfg.sync.min_owned_records)
        if counts is None:
            counts = FileCounts(cfg.sync.state_file) if cfg.sync.state_file else ProcessCounts()
        self.counts = counts
        self._last_printed: str | None = None

    # -- hysteresis counts ---------------------------------------------------------

    async def advance(self, registry: Registry, *, dry_run: bool = False) -> frozenset[str]:
        """Move the counts on by one read and keep them (router.dns.counts); a dry run
        previews the step and keeps nothing, or a few dry runs would remove a stamp
        before remove_after reads."""
        reads = [(s.name, s.dns_healthy) for s in registry.stamps]
        memory = hysteresis.advance(await self.counts.load(), reads, self.cfg.sync.remove_after)
        if not dry_run:
            await self.counts.save(memory)
            if self.metrics is not None:
                self.metrics.observe_stamps({n: m.published for n, m in memory.items()})
        return hysteresis.published(memory)

    # -- one pass ------------------------------------------------------------------

    def plan(self, registry: Registry, published: frozenset[str], state) -> Plan:
        desired = desired_sets(self.cfg.records, registry.stamps, published,
                               zone=self.provider.zone, ttl=self.cfg.sync.ttl)
        return build_plan(desired, state, self.provider.render, owner_id=self.cfg.sync.owner_id,
                          policy=self.cfg.sync.policy, zone=self.provider.zone, limits=self.limits,
                          rules=self.provider.rules)

    def _print(self, plan: Plan) -> None:
        text = plan.render()
        if self.always_print or text != self._last_printed:
            self.out.write(text + "\n")
            self.out.flush()
        self._last_printed = text

    async def sync_once(self, *, dry_run: bool = False, force: bool = False) -> PassResult:
        try:
            result = await self._pass(dry_run=dry_run, force=force)
        except DnsError as exc:
            result = PassResult(exc.result, message=str(exc))
        except Exception as exc:  # a bug must not end the loop; it is logged with its trace
            log.exception("sync pass failed")
            result = PassResult("error", message=f"{type(exc).__name__}: {exc}")
        if result.result not in ("ok", "dry_run"):
            log.error("dns sync %s: %s", result.result, result.message)
        elif result.applied:
            log.info("dns sync applied %d changes", len(result.applied))
        if self.metrics is not None:
            self.metrics.observe(result, self.clock())
            if self.cfg.metrics.textfile and not dry_run:
                try:
                    self.metrics.write_textfile(self.cfg.metrics.textfile)
                except OSError as exc:
                    log.warning("cannot write metrics textfile %s: %s", self.cfg.metrics.textfile, exc)
        return result

    async def _pass(self, *, dry_run: bool, force: bool) -> PassResult:
        registry = await self.registry.read()
        published = await self.advance(registry, dry_run=dry_run)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            state = await self.provider.read()
            plan = self.plan(registry, published, state)
            self._print(plan)
            if dry_run:
                try:
                    plan.raise_if_unsafe(force)
                except (PlanRefused, PlanInvalid) as exc:
                    return PassResult(exc.result, plan, message=str(exc))
                return PassResult("dry_run", plan)
            try:
                await self.provider.apply(plan, force=force)
            except ConflictError as exc:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                log.warning("%s; reading the zone again (attempt %d of %d)", exc, attempt + 1, CONFLICT_ATTEMPTS)
                continue
            except (PlanRefused, PlanInvalid) as exc:
                return PassResult(exc.result, plan, message=str(exc))
            return PassResult("ok", plan, applied=plan.changes)
        raise AssertionError("unreachable")

    async def run(self, *, dry_run: bool = False, force: bool = False,
                  stop: asyncio.Event | None = None) -> None:
        """Pass after pass, `interval` apart (from the end of one to the start of the next)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.sync_once(dry_run=dry_run, force=force)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.sync.interval)
            except asyncio.TimeoutError:
                pass
