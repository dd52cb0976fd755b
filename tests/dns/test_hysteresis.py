"""Stamp publication hysteresis: no network, no clock, no event loop."""

from __future__ import annotations

import pytest

from router.dns import hysteresis
from router.dns.hysteresis import COUNTING, DOWN, UP, StampMemory, advance, published, step


def run_reads(reads, remove_after=3):
    memory, seen = None, []
    for healthy in reads:
        memory = step(memory, healthy, remove_after)
        seen.append(memory.published)
    return seen


@pytest.mark.parametrize("reads, remove_after, expected", [
    # healthy at first sight: published at once
    ([True], 3, [True]),
    # never known healthy: not published
    ([False, False], 3, [False, False]),
    # removal only after remove_after unhealthy reads in a row
    ([True, False, False, False], 3, [True, True, True, False]),
    ([True, False], 1, [True, False]),
    # a healthy read in between resets the count
    ([True, False, False, True, False, False, False], 3, [True, True, True, True, True, True, False]),
    # restored at the first healthy read
    ([True, False, False, True], 2, [True, True, False, True]),
])
def test_publication_follows_the_rules(reads, remove_after, expected):
    assert run_reads(reads, remove_after) == expected


def test_states_and_counts():
    m = step(None, True, 2)
    assert m == StampMemory(UP, 0)
    m = step(m, False, 2)
    assert m == StampMemory(COUNTING, 1)
    m = step(m, False, 2)
    assert m == StampMemory(DOWN, 2)
    assert step(m, False, 2) == StampMemory(DOWN, 3)


def test_stamps_gone_from_the_registry_are_forgotten():
    memory = advance({}, [("a", True), ("b", True)], 3)
    memory = advance(memory, [("a", False)], 3)
    assert set(memory) == {"a"} and published(memory) == frozenset({"a"})


def test_state_file_round_trip_skips_what_it_cannot_read():
    memory = {"a": StampMemory(COUNTING, 2), "b": StampMemory(DOWN, 5)}
    assert hysteresis.from_json(hysteresis.to_json(memory)) == memory
    assert hysteresis.from_json({"stamps": {"a": {"state": "sideways", "failures": 1},
                                            "b": {"state": "up", "failures": -1},
                                            "c": {"state": "up", "failures": 0}}}) == {"c": StampMemory(UP, 0)}
    assert hysteresis.from_json(["not", "a", "table"]) == {}
