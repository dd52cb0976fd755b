"""router.core.health_fsm: the rules in its docstring, one test (or property) each.

No sockets, no event loop, no sleeps: time is a number passed in.
"""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.core.health_fsm import (BackendHealth, Outlier, OutlierLimits, Probe, ProbeLimits, end_ejection,
                                    ejection_allowed, ejection_time, forget_probes, on_probe, on_traffic, route,
                                    transition_rows)

U, D, K = Probe.UP, Probe.DOWN, Probe.UNKNOWN
ALWAYS = lambda: True  # noqa: E731
NEVER = lambda: False  # noqa: E731
OPS_DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def probe_states(results, rise=2, fall=3, h=None):
    h = h or BackendHealth()
    out = []
    for ok in results:
        on_probe(h, ok, ProbeLimits(rise, fall), 0.0)
        out.append(h.probe)
    return out


# -- rule 1: the initial state ------------------------------------------------------------

def test_a_new_backend_is_unknown_and_healthy():
    h = BackendHealth()
    assert h.probe is K and h.routable


@pytest.mark.parametrize("first, state", [(True, U), (False, D)])
def test_the_first_probe_decides_at_once(first, state):
    h = BackendHealth()
    changed = on_probe(h, first, ProbeLimits(rise=5, fall=5), 0.0)
    assert h.probe is state
    assert changed == (not first)      # UNKNOWN already counted as healthy


def test_turning_checks_off_forgets_a_down_verdict():
    h = BackendHealth()
    on_probe(h, False, ProbeLimits(), 0.0)
    assert not h.routable
    assert forget_probes(h) is True
    assert h.probe is K and h.routable and h.probe_failures == 0


# -- rule 2: rise/fall hysteresis, table-driven ---------------------------------------------

T, F = True, False


@pytest.mark.parametrize("rise, fall, results, expected", [
    (2, 3, [T, F, F, F], [U, U, U, D]),
    (2, 3, [T, F, F, T, F, F], [U, U, U, U, U, U]),         # a pass resets the fall streak
    (2, 3, [F, T, T], [D, D, U]),
    (2, 3, [F, T, F, T, F, T], [D] * 6),                    # a failure resets the rise streak
    (1, 1, [T, F, T, F], [U, D, U, D]),                     # rise = fall = 1: every result counts
    (3, 2, [T, F, F, T, T, T], [U, U, D, D, D, U]),
])
def test_rise_and_fall(rise, fall, results, expected):
    assert probe_states(results, rise, fall) == expected


def test_probe_failures_count_consecutive_failed_probes():
    h = BackendHealth()
    for ok in (T, F, F, T, F):
        on_probe(h, ok, ProbeLimits(), 0.0)
    assert h.probe_failures == 1


limits_st = st.builds(ProbeLimits, rise=st.integers(1, 5), fall=st.integers(1, 5))


@given(st.lists(st.booleans(), max_size=60), limits_st)
def test_state_changes_only_after_a_full_streak(results, limits):
    h = BackendHealth()
    before = h.probe
    for i, ok in enumerate(results):
        on_probe(h, ok, limits, 0.0)
        if before is U and h.probe is D:
            assert i + 1 >= limits.fall and not any(results[i + 1 - limits.fall:i + 1])
        if before is D and h.probe is U:
            assert i + 1 >= limits.rise and all(results[i + 1 - limits.rise:i + 1])
        if before is K:
            assert h.probe is (U if ok else D)
        before = h.probe


@given(st.lists(st.booleans(), min_size=1, max_size=60), limits_st)
def test_a_full_streak_always_moves(results, limits):
    h = BackendHealth()
    for ok in results:
        on_probe(h, ok, limits, 0.0)
    for _ in range(limits.fall):
        on_probe(h, False, limits, 0.0)
    assert h.probe is D
    for _ in range(limits.rise):
        on_probe(h, True, limits, 0.0)
    assert h.probe is U


@given(st.booleans(), st.integers(2, 6), st.integers(2, 6), st.integers(2, 40))
def test_alternating_probes_never_flap(first, rise, fall, n):
    results = [first if i % 2 == 0 else not first for i in range(n)]
    states = probe_states(results, rise, fall)
    assert set(states) == {U if first else D}


# -- rules 3 and 4: passive ejection, growth, cap, decay ---------------------------------------

OUT = OutlierLimits(consecutive_failures=3, base_ejection=10.0, max_ejection=100.0)


def fail(h, now=0.0, kind="connect", limits=OUT, room=ALWAYS):
    return on_traffic(h, False, kind, limits, now, room)


def test_failures_in_a_row_eject_for_the_base_time():
    h = BackendHealth()
    assert [fail(h, now=5.0) for _ in range(3)] == [False, False, True]
    assert h.outlier is Outlier.EJECTED and not h.routable
    assert h.ejected_until == 15.0 and h.ejections == 1


def test_a_good_response_resets_the_count():
    h = BackendHealth()
    fail(h), fail(h)
    on_traffic(h, True, "", OUT, 0.0, ALWAYS)
    assert h.passive_failures == 0
    fail(h), fail(h)
    assert h.outlier is Outlier.IN


@pytest.mark.parametrize("kind", ["connect", "timeout", "reset", "5xx", "tls"])
def test_every_failure_kind_counts(kind):
    h = BackendHealth()
    for _ in range(3):
        fail(h, kind=kind)
    assert h.outlier is Outlier.EJECTED


def test_5xx_can_be_left_out_and_then_neither_counts_nor_resets():
    limits = OutlierLimits(consecutive_failures=2, count_5xx=False)
    h = BackendHealth()
    fail(h, kind="connect", limits=limits)
    fail(h, kind="5xx", limits=limits)
    assert h.passive_failures == 1
    fail(h, kind="reset", limits=limits)
    assert h.outlier is Outlier.EJECTED


def test_outcomes_while_ejected_are_ignored():
    h = BackendHealth()
    for _ in range(3):
        fail(h)
    until = h.ejected_until
    fail(h, now=1.0)
    on_traffic(h, True, "", OUT, 1.0, ALWAYS)
    assert h.outlier is Outlier.EJECTED and h.ejected_until == until and h.ejections == 1


def test_the_ejection_ends_at_its_time_and_not_before():
    h = BackendHealth()
    for _ in range(3):
        fail(h)
    assert end_ejection(h, 9.999) is False and h.outlier is Outlier.EJECTED
    assert end_ejection(h, 10.0) is True
    assert h.routable and h.ejected_until is None and h.passive_failures == 0


def test_a_probe_down_backend_stays_out_when_its_ejection_ends():
    h = BackendHealth()
    on_probe(h, False, ProbeLimits(), 0.0)
    for _ in range(3):
        fail(h)
    assert end_ejection(h, 10.0) is False      # routability did not change
    assert h.outlier is Outlier.IN and not h.routable


def test_probes_that_bring_a_backend_back_end_its_ejection():
    h = BackendHealth()
    limits = ProbeLimits(rise=2, fall=1)
    for _ in range(3):
        fail(h)
    on_probe(h, False, limits, 1.0)               # killed: probes see it down
    on_probe(h, True, limits, 2.0)
    assert h.outlier is Outlier.EJECTED
    assert on_probe(h, True, limits, 3.0) is True  # restarted: rise passes bring it back
    assert h.routable and h.ejected_until is None and h.returned_at == 3.0


def test_passing_probes_of_an_up_backend_do_not_end_its_ejection():
    h = BackendHealth()
    on_probe(h, True, ProbeLimits(), 0.0)
    for _ in range(3):
        fail(h, kind="5xx")                       # health path fine, real requests failing
    for t in range(5):
        on_probe(h, True, ProbeLimits(), float(t))
    assert h.outlier is Outlier.EJECTED and not h.routable


def eject_again(h, now):
    for _ in range(3):
        fail(h, now=now)
    return h.ejected_until - now


def test_each_ejection_doubles_up_to_the_cap():
    h, now, times = BackendHealth(), 0.0, []
    for _ in range(6):
        times.append(eject_again(h, now))
        now = h.ejected_until
        end_ejection(h, now)
    assert times == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]


def test_the_count_starts_over_after_a_quiet_max_ejection():
    h = BackendHealth()
    eject_again(h, 0.0)
    end_ejection(h, 10.0)
    assert eject_again(h, 20.0) == 20.0           # back for 10 s: grows
    end_ejection(h, 40.0)
    assert eject_again(h, 140.0) == 10.0          # back for 100 s (= max): starts over
    assert h.ejections == 1


@given(st.integers(1, 5000), st.floats(0.001, 1e4), st.floats(0.001, 1e5))
def test_ejection_time_grows_and_is_capped(n, base, cap):
    limits = OutlierLimits(base_ejection=base, max_ejection=cap)
    t = ejection_time(n, limits)
    assert t <= cap and t >= min(base, cap)
    assert ejection_time(n + 1, limits) >= t
    assert ejection_time(1, limits) == min(base, cap)


# -- rule 5: the ejection guard --------------------------------------------------------------

def test_no_room_keeps_the_backend_in_and_the_count_primed():
    h = BackendHealth()
    for _ in range(5):
        fail(h, room=NEVER)
    assert h.outlier is Outlier.IN and h.passive_failures == 3
    assert fail(h, room=ALWAYS) is True


def test_room_is_asked_only_when_the_streak_is_full():
    asked = []
    h = BackendHealth()
    for _ in range(3):
        fail(h, room=lambda: asked.append(1) or True)
    assert asked == [1]


@pytest.mark.parametrize("ejected, total, fraction, allowed", [
    (0, 2, 0.5, True), (1, 2, 0.5, False), (0, 1, 0.5, False), (0, 1, 1.0, True),
    (28, 100, 0.29, True), (29, 100, 0.29, False), (0, 3, 0.0, False), (0, 0, 1.0, False),
])
def test_ejection_allowed(ejected, total, fraction, allowed):
    assert ejection_allowed(ejected, total, fraction) is allowed


@given(st.integers(1, 12), st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 1.0]),
       st.lists(st.tuples(st.integers(0, 11), st.booleans()), max_size=200))
def test_live_traffic_never_ejects_more_than_the_fraction(n, fraction, outcomes):
    """A stamp of n backends under any stream of outcomes, with time standing still."""
    limits = OutlierLimits(consecutive_failures=2, max_ejected_fraction=fraction)
    states = [BackendHealth() for _ in range(n)]

    def room():
        return ejection_allowed(sum(s.outlier is Outlier.EJECTED for s in states), n, fraction)

    for i, ok in outcomes:
        on_traffic(states[i % n], ok, "" if ok else "reset", limits, 0.0, room)
        assert sum(s.outlier is Outlier.EJECTED for s in states) <= fraction * n + 1e-9


# -- rules 6 and 7: routable backends and panic ---------------------------------------------------

def stamp_of(up: int, down: int):
    backends = tuple(f"b{i}" for i in range(up + down))
    states = {b: BackendHealth() for b in backends}
    for b in backends[up:]:
        on_probe(states[b], False, ProbeLimits(), 0.0)
    return backends, states


@pytest.mark.parametrize("up, down, threshold, panic", [
    (1, 3, 0.0, False),      # 0 is off
    (1, 3, 0.5, True),       # 25 % healthy < 50 %
    (2, 2, 0.5, False),      # exactly the share: not fewer
    (3, 1, 1.0, True),       # 1.0: any loss panics
    (4, 0, 1.0, False),
    (0, 4, 0.5, False),      # none healthy: the stamp is down, failover decides
])
def test_panic(up, down, threshold, panic):
    backends, states = stamp_of(up, down)
    routable, in_panic = route(backends, states, threshold)
    assert in_panic is panic
    assert routable == (backends if panic else backends[:up])


def test_routable_tuple_leaves_out_down_and_ejected_backends():
    backends, states = stamp_of(3, 1)
    for _ in range(3):
        fail(states["b1"])
    assert route(backends, states, 0.0) == (("b0", "b2"), False)


@given(st.lists(st.booleans(), min_size=1, max_size=10), st.floats(0, 1))
def test_route_is_the_routable_backends_or_all_of_them(ups, threshold):
    backends = tuple(f"b{i}" for i in range(len(ups)))
    states = {b: BackendHealth() for b in backends}
    for b, up in zip(backends, ups):
        if not up:
            on_probe(states[b], False, ProbeLimits(), 0.0)
    routable, panic = route(backends, states, threshold)
    healthy = tuple(b for b, up in zip(backends, ups) if up)
    assert routable == (backends if panic else healthy)
    assert panic == (bool(healthy) and len(healthy) / len(backends) < threshold)


# -- the docs show the tables as they are ---------------------------------------------------------

def test_operations_guide_lists_every_transition():
    doc = OPS_DOC.read_text()
    for machine, state, event, effect in transition_rows():
        assert f"| {machine} | {state} | {event} | {effect} |" in doc, (machine, state, event, effect)
