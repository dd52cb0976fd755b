"""The move state table (router.core.move): no sockets, no clock, table-driven."""

import pytest

from router.core.move import (FINISH_MIN, TRANSITIONS, Event, MoveRefused, Outcome, Pin, Step, Strategy,
                              advance, begin, check_move)

T0 = 1000.0


def fresh(strategy=Strategy.PAUSE, prior=Pin("old", "read-write"), timeout=30.0):
    return begin("acme", "old", "new", strategy, prior, timeout=timeout, now=T0)


def run(events, move=None):
    move = move or fresh()
    for i, event in enumerate(events):
        move = advance(move, event, T0 + i + 1, detail=f"e{i}")
    return move


def test_every_step_ends_in_a_known_state_for_every_event():
    for step in (Step.PAUSE, Step.DRAIN, Step.HOOK, Step.FLIP, Step.ROLLBACK):
        for event in Event:
            assert (step, event) in TRANSITIONS, (step, event)


def test_the_happy_path_is_pause_drain_hook_flip():
    move = run([Event.OK] * 4)
    assert move.outcome is Outcome.COMPLETED and not move.moving and move.error == ""
    assert [r.step for r in move.history] == [Step.PAUSE, Step.DRAIN, Step.HOOK, Step.FLIP]
    assert all(r.event is Event.OK and r.ended is not None for r in move.history)


@pytest.mark.parametrize("failing", [Step.PAUSE, Step.DRAIN, Step.HOOK])
@pytest.mark.parametrize("event", [Event.FAILED, Event.TIMED_OUT, Event.PARTIAL])
def test_anything_before_the_flip_rolls_back(failing, event):
    oks = [Step.PAUSE, Step.DRAIN, Step.HOOK].index(failing)
    move = run([Event.OK] * oks + [event])
    assert move.step is Step.ROLLBACK
    move = run([Event.OK], move)
    assert move.outcome is Outcome.ROLLED_BACK and move.error.startswith(failing.value)


def test_a_flip_no_router_took_rolls_back():
    move = run([Event.OK, Event.OK, Event.OK, Event.FAILED, Event.OK])
    assert move.outcome is Outcome.ROLLED_BACK


def test_a_flip_some_routers_took_goes_forward_never_back():
    move = run([Event.OK, Event.OK, Event.OK, Event.PARTIAL])
    assert move.step is Step.FLIP
    move = run([Event.OK], move)
    assert move.outcome is Outcome.COMPLETED and move.error == ""


def test_a_flip_or_rollback_retried_past_the_time_for_finishing_gives_up():
    move = run([Event.OK, Event.OK, Event.OK])
    late = move.finish_by + 1
    move = advance(move, Event.PARTIAL, late, "one router did not answer")
    assert move.outcome is Outcome.FAILED and "gave up" in move.error


def test_a_rollback_that_fails_is_retried_then_failed_at_its_deadline():
    move = run([Event.FAILED, Event.FAILED])
    assert move.step is Step.ROLLBACK
    move = advance(move, Event.TIMED_OUT, move.finish_by)
    assert move.outcome is Outcome.FAILED


def test_the_flip_keeps_the_mode_the_tenant_had_and_the_pause_sets_the_strategy():
    move = fresh(Strategy.READ_ONLY, Pin("old", "read-only"))
    assert move.paused_pin == Pin("old", "read-only") and move.flipped == Pin("new", "read-only")
    assert fresh().paused_pin == Pin("old", "paused")


def test_deadlines_bound_each_step():
    move = fresh(timeout=30.0)
    assert move.until(T0) == 30.0 and move.until(T0 + 40) == 0.0
    assert move.finish_by - move.deadline == max(FINISH_MIN, 15.0)
    flip = run([Event.OK] * 3, move)
    assert flip.until(T0 + 31) > 0             # a flip is not cut off by a slow hook


def test_a_finished_move_takes_no_more_events():
    with pytest.raises(ValueError):
        advance(run([Event.OK] * 4), Event.OK, T0 + 10)


STAMPS = {"old": "eu", "new": "eu", "far": "us"}


@pytest.mark.parametrize("target,current,status,path", [
    ("nope", "old", 422, "to"),
    ("old", "old", 409, "to"),
    ("far", "old", 409, "to"),
    ("new", None, 409, ""),
])
def test_moves_that_cannot_begin(target, current, status, path):
    with pytest.raises(MoveRefused) as exc:
        check_move("acme", target, current, STAMPS)
    assert (exc.value.status, exc.value.path) == (status, path)


def test_a_move_across_residencies_when_allowed():
    check_move("acme", "far", "old", STAMPS, cross_residency=True)
