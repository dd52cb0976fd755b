"""Moving a tenant from one stamp to another, as a state table (pure: `now` is an argument).

The rules the table keeps:

1. Nothing of the tenant reaches the new stamp before its data is there: the pin flips
   only after the hook said so (HOOK ok), and the hook runs only once nothing of the
   tenant (pause), or no write of it (read-only), is in flight anywhere (DRAIN ok).
2. No write reaches the old stamp once one reached the new: from PAUSE on, the pin's mode
   keeps new work off the old stamp, and the flip is the only step that names the new one.
3. Before the flip, any failure or an expired deadline rolls back: the pin as it was, and
   the held requests released there. A flip that some routers took and others did not
   is not rolled back (writes may have reached the new stamp): it is retried until every
   router took it or the deadline for finishing passes; a router that never took it keeps
   the paused pin, which sends nothing anywhere.
4. A rollback is retried the same way; what it could not restore is the outcome FAILED,
   never a pin left half way.

The shell (router.control.moves on one router, router.migrate across several) carries out
each step and reports its event; it never decides what comes next.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class Strategy(enum.StrEnum):
    PAUSE = "pause"              # every request held during the move
    READ_ONLY = "read-only"      # reads go on to the old stamp, writes are refused (403)


class Step(enum.StrEnum):
    PAUSE = "pause"          # the pin takes the strategy's mode (paused | read-only), same stamp
    DRAIN = "drain"          # wait until the tenant has nothing (pause) or no write (read-only) in flight
    HOOK = "hook"            # [migration] hook: the data is put in place on the new stamp
    FLIP = "flip"            # the pin names the new stamp, in the mode it had before the move
    ROLLBACK = "rollback"    # the pin as it was before the move
    DONE = "done"


class Event(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"        # the step changed nothing anywhere
    PARTIAL = "partial"      # the step took effect on some routers and not on others
    TIMED_OUT = "timed_out"  # the move's deadline passed during the step


class Outcome(enum.StrEnum):
    COMPLETED = "completed"      # the pin names the new stamp everywhere
    ROLLED_BACK = "rolled_back"  # the pin is as it was everywhere
    FAILED = "failed"            # neither could be made to hold everywhere: see `error`


ROLL_BACK = (Event.FAILED, Event.PARTIAL, Event.TIMED_OUT)

# (step, event) -> next step. A pair missing here is a bug in the shell.
TRANSITIONS: dict[tuple[Step, Event], Step] = {
    (Step.PAUSE, Event.OK): Step.DRAIN,
    (Step.DRAIN, Event.OK): Step.HOOK,
    (Step.HOOK, Event.OK): Step.FLIP,
    (Step.FLIP, Event.OK): Step.DONE,
    **{(step, event): Step.ROLLBACK for step in (Step.PAUSE, Step.DRAIN, Step.HOOK) for event in ROLL_BACK},
    (Step.FLIP, Event.FAILED): Step.ROLLBACK,       # no router took it: as if it never began
    (Step.FLIP, Event.PARTIAL): Step.FLIP,          # rule 3: forward, again
    (Step.FLIP, Event.TIMED_OUT): Step.DONE,
    (Step.ROLLBACK, Event.OK): Step.DONE,
    (Step.ROLLBACK, Event.FAILED): Step.ROLLBACK,
    (Step.ROLLBACK, Event.PARTIAL): Step.ROLLBACK,
    (Step.ROLLBACK, Event.TIMED_OUT): Step.DONE,
}

# A rollback, or a flip being finished, gets this share of the move's timeout past the
# deadline (at least FINISH_MIN seconds): what is left of the move's own time may be none.
FINISH_SHARE, FINISH_MIN = 0.5, 5.0


class MoveRefused(Exception):
    """A move that cannot begin; carries the HTTP status of the refusal."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path


@dataclass(frozen=True, slots=True)
class Pin:
    stamp: str | None            # None: the tenant had no pin (placed by hash)
    mode: str = "read-write"


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: Step
    started: float
    ended: float | None = None
    event: Event | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        out = {"step": self.step.value, "started": self.started}
        if self.ended is not None:
            out.update(ended=self.ended, seconds=round(self.ended - self.started, 4), result=self.event.value)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Move:
    tenant: str
    source: str                  # the stamp the tenant is on when the move begins
    target: str
    strategy: Strategy
    prior: Pin                   # the pin before the move, restored by a rollback
    started: float
    deadline: float              # before the flip: past it, the move rolls back
    finish_by: float             # a rollback or a flip being finished stops trying here
    close_tunnels: bool = False  # the drain closes the tenant's WebSocket tunnels rather than wait for them
    step: Step = Step.PAUSE
    history: tuple[StepRecord, ...] = field(default=())
    outcome: Outcome | None = None
    error: str = ""

    @property
    def moving(self) -> bool:
        return self.step is not Step.DONE

    @property
    def mode(self) -> str:
        """The pin mode the PAUSE step sets."""
        return "paused" if self.strategy is Strategy.PAUSE else "read-only"

    @property
    def flipped(self) -> Pin:
        """The pin the FLIP step sets: the new stamp, in the mode the tenant had."""
        return Pin(self.target, self.prior.mode)

    @property
    def paused_pin(self) -> Pin:
        return Pin(self.source, self.mode)

    def until(self, now: float) -> float:
        """Seconds the current step may take: the move's deadline up to the flip; the
        flip and a rollback may use the time for finishing (they are short, and must not
        be cut off because the hook used the whole timeout)."""
        end = self.finish_by if self.step in (Step.FLIP, Step.ROLLBACK) else self.deadline
        return max(0.0, end - now)

    def as_dict(self) -> dict:
        out = {"tenant": self.tenant, "from": self.source, "to": self.target, "strategy": self.strategy.value,
               "close_tunnels": self.close_tunnels, "moving": self.moving, "step": self.step.value, "started": self.started, "deadline": self.deadline,
               "steps": [r.as_dict() for r in self.history]}
        if self.outcome is not None:
            out["outcome"] = self.outcome.value
            ended = self.history[-1].ended if self.history else None
            if ended is not None:
                out["seconds"] = round(ended - self.started, 4)
        if self.error:
            out["error"] = self.error
        return out


def begin(tenant: str, source: str, target: str, strategy: Strategy, prior: Pin, *, timeout: float,
          now: float, close_tunnels: bool = False) -> Move:
    finish = max(FINISH_MIN, timeout * FINISH_SHARE)
    return Move(tenant=tenant, source=source, target=target, strategy=strategy, prior=prior, started=now,
                close_tunnels=close_tunnels,
                deadline=now + timeout, finish_by=now + timeout + finish,
                history=(StepRecord(Step.PAUSE, now),))


def advance(move: Move, event: Event, now: float, detail: str = "") -> Move:
    """The move after its current step ended with `event`."""
    if not move.moving:
        raise ValueError(f"the move of {move.tenant!r} is over ({move.outcome})")
    nxt = TRANSITIONS[(move.step, event)]
    last = replace(move.history[-1], ended=now, event=event, detail=detail)
    history = move.history[:-1] + (last,)
    error = move.error
    if event is not Event.OK and not error:
        error = f"{move.step.value}: {detail or event.value}"
    if nxt is Step.DONE:
        if move.step is Step.FLIP:
            outcome = Outcome.COMPLETED if event is Event.OK else Outcome.FAILED
        else:
            outcome = Outcome.ROLLED_BACK if event is Event.OK else Outcome.FAILED
        if outcome is Outcome.COMPLETED:
            error = ""
        return replace(move, step=Step.DONE, history=history, outcome=outcome, error=error)
    if nxt is move.step and now >= move.finish_by:
        # A retried flip or rollback out of time: what holds now is the outcome.
        return replace(move, step=Step.DONE, history=history, outcome=Outcome.FAILED,
                       error=f"{error}; gave up at the deadline for finishing")
    return replace(move, step=nxt, history=history + (StepRecord(nxt, now),), error=error)


def check_move(tenant: str, target: str, current: str | None, stamps: dict[str, str], *,
               cross_residency: bool = False) -> None:
    """Refuse a move that cannot begin. `stamps` maps each stamp to its residency;
    `current` is the stamp serving the tenant now (its pin, or its hash placement)."""
    if target not in stamps:
        raise MoveRefused(422, f"unknown stamp {target!r} (stamps: {', '.join(stamps)})", "to")
    if current is None:
        raise MoveRefused(409, f"tenant {tenant!r} has no stamp now (no pin and no active stamp placed it)")
    if current == target:
        raise MoveRefused(409, f"tenant {tenant!r} is on stamp {target!r} already", "to")
    if stamps.get(current) != stamps[target] and not cross_residency:
        raise MoveRefused(409, f"stamp {target!r} is in residency {stamps[target]!r}, tenant {tenant!r} is on "
                               f"{current!r} in {stamps.get(current)!r}: a move across residencies needs "
                               "\"allow_cross_residency\": true", "to")
