"""Memory overload: when a worker stops taking work, and when it takes it again.

Sans-IO: the resident memory is an argument (router.proxy.overload reads it).

The rules kept here
-------------------
1. No limit, no overload: without `limits.max_memory` a worker is always NORMAL.
2. Entering. A worker whose resident memory reaches `max_memory` sheds: it stops
   accepting connections and answers new requests 503 with Retry-After. Requests already
   being proxied finish: cutting them would lose work the client cannot tell was done.
3. Leaving. It goes back to NORMAL only once its memory is below RECOVER_SHARE of the
   limit, so that a worker hovering at the limit does not flap between the two states
   at every check.
4. Any other reading leaves the state as it is.
5. A worker that has shed for STUCK_AFTER seconds with no connection left open cannot
   get under by shedding more (a heap it cannot give back, a leak): it is replaced by a
   fresh one. Its own listen queue is not served by the other workers (one socket per
   worker), so waiting on it forever would stall those connections for good.
"""

from __future__ import annotations

import enum

# Below this share of limits.max_memory a shedding worker takes work again.
RECOVER_SHARE = 0.9
# Seconds a worker may shed with nothing open before it is replaced (rule 5): long enough
# for what the last connections held to be freed and given back.
STUCK_AFTER = 5.0


class Pressure(enum.Enum):
    NORMAL = "normal"          # accepting connections, answering requests
    SHEDDING = "shedding"      # not accepting; new requests answered 503


class Reading(enum.Enum):
    OVER = "over"              # at or past the limit
    BETWEEN = "between"        # under the limit, above the recovery mark
    UNDER = "under"            # below the recovery mark (or no limit)


# (state, reading) -> next state; the pairs not listed keep their state (rule 4).
TRANSITIONS: dict[tuple[Pressure, Reading], Pressure] = {
    (Pressure.NORMAL, Reading.OVER): Pressure.SHEDDING,
    (Pressure.SHEDDING, Reading.UNDER): Pressure.NORMAL,
}


def reading(resident: int, limit: int | None) -> Reading:
    if limit is None:
        return Reading.UNDER
    if resident >= limit:
        return Reading.OVER
    if resident < limit * RECOVER_SHARE:
        return Reading.UNDER
    return Reading.BETWEEN


def next_pressure(state: Pressure, resident: int, limit: int | None) -> Pressure:
    return TRANSITIONS.get((state, reading(resident, limit)), state)


def stuck(state: Pressure, nothing_open_for: float) -> bool:
    """Rule 5: shedding, with no connection open for STUCK_AFTER seconds."""
    return state is Pressure.SHEDDING and nothing_open_for >= STUCK_AFTER
