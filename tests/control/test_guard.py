"""The drop guard's plan: what a candidate removes, and when that is too much."""

import pytest

from router.control.guard import plan_drop

PINS = {f"t{i}": "eu-1" for i in range(10)}
STAMPS = {"eu-1", "eu-2"}


def test_an_empty_table_drops_every_pin_and_is_unsafe():
    plan = plan_drop(PINS, {}, STAMPS, STAMPS, 0.5)
    assert (plan.pins_dropped, plan.pins_fraction, plan.unsafe) == (10, 1.0, True)
    assert "drops 10 of 10 pins (100%)" in plan.reasons()[0]


@pytest.mark.parametrize("kept, unsafe", [(5, False), (4, True), (10, False)])
def test_the_threshold_is_more_than_the_fraction(kept, unsafe):
    after = dict(list(PINS.items())[:kept])
    assert plan_drop(PINS, after, STAMPS, STAMPS, 0.5).unsafe is unsafe


def test_moving_pins_drops_none():
    moved = {t: "eu-2" for t in PINS}
    assert plan_drop(PINS, moved, STAMPS, STAMPS, 0.0).unsafe is False


def test_dropping_stamps_counts_on_its_own():
    plan = plan_drop(PINS, PINS, {"a", "b", "c"}, {"a"}, 0.5)
    assert (plan.stamps_dropped, plan.unsafe) == (2, True)
    assert plan.reasons() == ["drops 2 of 3 stamps (67%), more than control.max_drop_fraction (50%)"]


def test_growing_from_nothing_is_safe():
    assert plan_drop({}, PINS, set(), STAMPS, 0.0).unsafe is False


def test_max_fraction_one_turns_the_guard_off():
    assert plan_drop(PINS, {}, STAMPS, set(), 1.0).unsafe is False


def test_a_safe_plan_may_stop_counting_but_a_refusal_is_exact():
    before = {f"t{i}": "eu-1" for i in range(50000)}
    after = dict(list(before.items())[:20000])
    plan = plan_drop(before, after, STAMPS, STAMPS, 0.5)
    assert plan.unsafe and plan.pins_exact and plan.pins_dropped == 30000
    plan = plan_drop(before, dict(before), STAMPS, STAMPS, 0.5)
    assert not plan.unsafe and not plan.pins_exact and plan.pins_dropped <= 25000


BIG = {f"t{i:06d}": "eu-1" for i in range(60000)}


def test_a_large_clearly_safe_candidate_is_judged_on_a_sample():
    after = {t: s for i, (t, s) in enumerate(BIG.items()) if i % 10}      # drops 10 %
    plan = plan_drop(BIG, after, STAMPS, STAMPS, 0.5)
    assert not plan.unsafe and not plan.pins_exact
    # The estimate: six worst-case deviations of a 4,096-pin sample are 4.7 points.
    assert abs(plan.pins_dropped - 6000) <= 0.047 * len(BIG)


def test_a_large_candidate_near_the_threshold_is_counted_not_sampled():
    after = dict(list(BIG.items())[:28800])                              # drops 52 %
    plan = plan_drop(BIG, after, STAMPS, STAMPS, 0.5)
    assert plan.unsafe and plan.pins_exact and plan.pins_dropped == 31200


def test_a_large_candidate_dropping_everything_is_refused_with_the_exact_count():
    plan = plan_drop(BIG, {}, STAMPS, STAMPS, 0.5)
    assert plan.unsafe and plan.pins_exact and plan.pins_dropped == len(BIG)
