"""The memory overload table (router.core.overload), without a process."""

from __future__ import annotations

import pytest

from router.core.overload import STUCK_AFTER, Pressure, next_pressure, stuck

N, S = Pressure.NORMAL, Pressure.SHEDDING
LIMIT = 1000


@pytest.mark.parametrize(("state", "resident", "limit", "expected"), [
    (N, 10**12, None, N),            # no limit, no overload
    (S, 10**12, None, N),            # a reload that removes the limit ends shedding
    (N, 999, LIMIT, N),
    (N, 1000, LIMIT, S),             # at the limit is over it
    (S, 1000, LIMIT, S),
    (S, 950, LIMIT, S),              # under the limit, above 90 %: no flapping back
    (N, 950, LIMIT, N),
    (S, 900, LIMIT, S),              # 90 % itself is not under it
    (S, 899, LIMIT, N),
])
def test_transitions(state, resident, limit, expected):
    assert next_pressure(state, resident, limit) is expected


@pytest.mark.parametrize(("state", "nothing_open_for", "expected"), [
    (S, STUCK_AFTER, True),
    (S, STUCK_AFTER - 0.1, False),      # the last connections' memory may still be on its way back
    (N, STUCK_AFTER * 10, False),       # an idle worker under its limit is just idle
])
def test_a_worker_shedding_with_nothing_open_is_replaced(state, nothing_open_for, expected):
    assert stuck(state, nothing_open_for) is expected
