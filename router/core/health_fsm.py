"""Backend health as two small state machines (active probes, passive ejection) and the
stamp-level rules built on them (the ejection guard, panic).

Sans-IO: no clock, no sockets, no event loop; `now` is an argument (any monotonic clock).
router.health feeds events in and recomputes a stamp's routable tuple only when a
function here says a backend's routability changed.

The rules kept here
-------------------
1. Initial state. A backend starts UNKNOWN, which counts as healthy: until its first
   probe completes, a backend is healthy only if no probe has failed. The first result
   decides at once (UNKNOWN -> UP or DOWN) without rise/fall, so a backend that is dead
   at start-up leaves rotation after one probe, not `fall` of them. A backend of a stamp
   with health checks off stays UNKNOWN, i.e. healthy unless passively ejected.
2. Rise/fall hysteresis. UP turns DOWN after `fall` failed probes in a row; DOWN turns UP
   after `rise` passed probes in a row. A contrary result resets the streak, so probes
   that alternate never move a backend (for rise and fall of 2 or more).
3. Passive ejection. `consecutive_failures` failed live requests in a row (connect
   failure, timeout, reset, and 5xx unless `count_5xx` is off) eject a backend; a good
   response resets the count. Outcomes arriving while ejected are ignored: they are
   requests that were already in flight.
4. Ejection growth and cap. The n-th ejection lasts `base * 2**(n-1)`, at most `max`.
   The count starts over once a backend has stayed in for `max` seconds after its last
   ejection ended, so an old incident does not lengthen a new one. Probes that bring a
   backend back (DOWN -> UP) also end its ejection: they saw it recover, and the failures
   behind the ejection came before that. Passing probes of a backend that stayed UP do
   not: a backend can answer its health path and still fail real requests.
5. Ejection guard. An ejection that would leave more than `max_ejected_fraction` of any
   of its stamps' backends passively ejected does not happen; the failure count is kept,
   so the backend goes as soon as there is room. Probe-DOWN backends are not counted:
   the guard bounds what live traffic alone can take out. With the default 0.5 a
   one-backend stamp is never ejected passively (its probes and stamp failover cover it).
6. Routable. A backend takes traffic when its probe state is not DOWN and it is not
   ejected.
7. Panic. When some, but fewer than `panic_threshold` of a stamp's backends are routable,
   the stamp routes to all of them: a health signal that condemns most of a stamp is
   more likely wrong than the stamp. With none routable there is no panic: the stamp is
   down and stamp failover (router.core.decide) takes over. A threshold of 0 is off.

The transitions are the two tables below; `transition_rows()` renders them for the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterator, Mapping, NamedTuple


class Probe(Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Outlier(Enum):
    IN = "in"
    EJECTED = "ejected"


class Event(Enum):
    PROBE_PASS = "probe passed"
    PROBE_FAIL = "probe failed"
    TRAFFIC_OK = "request ok"
    TRAFFIC_FAIL = "request failed"
    EJECTION_OVER = "ejection time over"


class Rule(NamedTuple):
    target: Probe | Outlier
    # The limit (an attribute of ProbeLimits/OutlierLimits) the streak of this event must
    # reach before the move; None: move (or, staying put, reset the streak) at once.
    after: str | None = None


_U, _D, _K = Probe.UP, Probe.DOWN, Probe.UNKNOWN
PROBE_TABLE: Mapping[tuple[Probe, Event], Rule] = {
    (_K, Event.PROBE_PASS): Rule(_U),
    (_K, Event.PROBE_FAIL): Rule(_D),
    (_U, Event.PROBE_PASS): Rule(_U),
    (_U, Event.PROBE_FAIL): Rule(_D, after="fall"),
    (_D, Event.PROBE_PASS): Rule(_U, after="rise"),
    (_D, Event.PROBE_FAIL): Rule(_D),
}

# Pairs not listed are ignored (an outcome while ejected, an expiry while in).
OUTLIER_TABLE: Mapping[tuple[Outlier, Event], Rule] = {
    (Outlier.IN, Event.TRAFFIC_OK): Rule(Outlier.IN),
    (Outlier.IN, Event.TRAFFIC_FAIL): Rule(Outlier.EJECTED, after="consecutive_failures"),
    (Outlier.EJECTED, Event.EJECTION_OVER): Rule(Outlier.IN),
}

# "tls": a backend whose certificate does not verify (or whose handshake fails) is as
# unusable as one that refuses the connection.
FAILURE_KINDS = frozenset(("connect", "timeout", "reset", "5xx", "tls"))


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    rise: int = 2
    fall: int = 3


@dataclass(frozen=True, slots=True)
class OutlierLimits:
    consecutive_failures: int = 5
    count_5xx: bool = True
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejected_fraction: float = 0.5


@dataclass(slots=True)
class BackendHealth:
    probe: Probe = Probe.UNKNOWN
    probe_streak: int = 0            # results in a row against the current probe state
    probe_failures: int = 0          # failed probes in a row (for /stamps)
    outlier: Outlier = Outlier.IN
    passive_failures: int = 0        # failed live requests in a row: the outlier streak
    ejections: int = 0               # drives the growth of rule 4; decays
    ejected_until: float | None = None
    returned_at: float | None = None  # when the last ejection ended

    @property
    def routable(self) -> bool:
        return self.probe is not Probe.DOWN and self.outlier is Outlier.IN


def _step(table: Mapping, state, streak: int, event: Event, limits) -> tuple:
    """(state, streak) after `event`; the one interpreter of both tables."""
    rule = table.get((state, event))
    if rule is None:
        return state, streak
    if rule.after is None:
        return rule.target, 0
    streak += 1
    if streak >= getattr(limits, rule.after):
        return rule.target, 0
    return state, streak


def on_probe(h: BackendHealth, passed: bool, limits: ProbeLimits, now: float) -> bool:
    """Feed one probe result; True when the backend's routability changed."""
    before, was = h.routable, h.probe
    h.probe_failures = 0 if passed else h.probe_failures + 1
    event = Event.PROBE_PASS if passed else Event.PROBE_FAIL
    h.probe, h.probe_streak = _step(PROBE_TABLE, h.probe, h.probe_streak, event, limits)
    if was is Probe.DOWN and h.probe is Probe.UP and h.outlier is Outlier.EJECTED:
        _return(h, now)
    return h.routable != before


def forget_probes(h: BackendHealth) -> bool:
    """Health checks were turned off for this backend: back to UNKNOWN (rule 1)."""
    before = h.routable
    h.probe, h.probe_streak, h.probe_failures = Probe.UNKNOWN, 0, 0
    return h.routable != before


def counts_as_failure(ok: bool, kind: str, limits: OutlierLimits) -> bool | None:
    """True/False for a failure/success of live traffic; None when it says nothing."""
    if ok:
        return False
    if kind == "5xx" and not limits.count_5xx:
        return None
    return kind in FAILURE_KINDS or None


def on_traffic(h: BackendHealth, ok: bool, kind: str, limits: OutlierLimits, now: float,
               room: Callable[[], bool]) -> bool:
    """Feed one live-traffic outcome; True when the backend was ejected by it.

    `room()` answers rule 5 for this backend's stamps; it is asked only when the streak
    has reached the limit, so the common path never counts a stamp's ejected backends.
    """
    failed = counts_as_failure(ok, kind, limits)
    if failed is None:
        return False
    event = Event.TRAFFIC_FAIL if failed else Event.TRAFFIC_OK
    state, streak = _step(OUTLIER_TABLE, h.outlier, h.passive_failures, event, limits)
    if state is Outlier.EJECTED and h.outlier is Outlier.IN:
        if not room():
            h.passive_failures = limits.consecutive_failures   # ejected as soon as there is room
            return False
        _eject(h, now, limits)
        return True
    h.outlier, h.passive_failures = state, streak
    return False


def ejection_time(n: int, limits: OutlierLimits) -> float:
    """How long the n-th ejection (n >= 1) lasts (rule 4)."""
    return min(limits.base_ejection * 2.0 ** min(n - 1, 64), limits.max_ejection)


def _eject(h: BackendHealth, now: float, limits: OutlierLimits) -> None:
    if h.returned_at is not None and now - h.returned_at >= limits.max_ejection:
        h.ejections = 0
    h.ejections += 1
    h.outlier = Outlier.EJECTED
    h.passive_failures = 0
    h.ejected_until = now + ejection_time(h.ejections, limits)


def end_ejection(h: BackendHealth, now: float) -> bool:
    """The ejection timer fired: back in if its time is over. True when routability changed."""
    if h.outlier is not Outlier.EJECTED or h.ejected_until is None or now < h.ejected_until:
        return False
    before = h.routable
    _return(h, now)
    return h.routable != before


def _return(h: BackendHealth, now: float) -> None:
    h.outlier, h.passive_failures = _step(OUTLIER_TABLE, h.outlier, h.passive_failures,
                                          Event.EJECTION_OVER, None)
    h.ejected_until = None
    h.returned_at = now


def ejection_allowed(ejected: int, total: int, fraction: float) -> bool:
    """Rule 5 for one stamp: may one more of its `total` backends be ejected?"""
    # A quotient of two ints is correctly rounded, so 29/100 <= 0.29 holds where
    # 29 <= 0.29 * 100 (28.999...) would not.
    return total > 0 and (ejected + 1) / total <= fraction


def route(backends: tuple[str, ...], states: Mapping[str, BackendHealth],
          panic_threshold: float) -> tuple[tuple[str, ...], bool]:
    """A stamp's routable backends and whether it is in panic (rules 6 and 7)."""
    healthy = tuple(b for b in backends if states[b].routable)
    if healthy and panic_threshold > 0 and len(healthy) / len(backends) < panic_threshold:
        return backends, True
    return healthy, False


def transition_rows() -> Iterator[tuple[str, str, str, str]]:
    """(machine, state, event, effect) for every listed transition, for the docs."""
    for machine, table in (("probe", PROBE_TABLE), ("outlier", OUTLIER_TABLE)):
        for (state, event), rule in table.items():
            if rule.target is state:
                effect = "stay, reset the streak"
            elif rule.after is None:
                effect = f"-> {rule.target.value}"
            else:
                effect = f"-> {rule.target.value} after `{rule.after}` in a row"
            yield machine, state.value, event.value, effect
