"""The drop guard: plan what a candidate config would remove, refuse too much unless forced.

A control plane that serves an empty tenants table, or a file truncated by a bad deploy,
is valid config that would send every pinned tenant to hash placement (or 404). Such a
candidate is refused when it removes more than `control.max_drop_fraction` of the pins or
of the stamps serving now; the operator can push it anyway with force. The plan is
computed against the config being served, and the threshold is the running config's,
so a candidate cannot lower the bar it is judged by.

Counting what a million-pin candidate drops is a million lookups in a table too big for
the CPU caches: 0.3-0.7 s of a reload that has 2 s in all (docs/control-plane.md), and it
holds the GIL the data path needs. A large table is judged on a random sample first. A
sample of 4,096 pins estimates the dropped share within 0.8 points (one standard
deviation, at worst); a candidate whose estimate is more than six deviations below the
threshold is accepted on it. Anything closer, and every refusal, is counted exactly, so
a refused plan always has the exact count, and a wrongly accepted one would take a
six-sigma sample (odds below one in a billion).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Mapping

from router.control.bulk import SLICE_ITEMS, count_missing

# Tables at least this large are sampled before they are counted.
SAMPLE_FROM = 50_000
SAMPLE_SIZE = 4096
SAMPLE_SIGMAS = 6.0


@dataclass(frozen=True)
class DropPlan:
    pins_before: int
    pins_after: int
    pins_dropped: int        # tenants pinned now and not pinned by the candidate (at most, if not exact)
    stamps_before: int
    stamps_after: int
    stamps_dropped: int      # stamps in the current config and not in the candidate
    max_fraction: float
    pins_exact: bool = True  # False: pins_dropped is an estimate (a sample, or an early stop)

    @property
    def pins_fraction(self) -> float:
        return self.pins_dropped / self.pins_before if self.pins_before else 0.0

    @property
    def stamps_fraction(self) -> float:
        return self.stamps_dropped / self.stamps_before if self.stamps_before else 0.0

    @property
    def unsafe(self) -> bool:
        return self.pins_fraction > self.max_fraction or self.stamps_fraction > self.max_fraction

    def reasons(self) -> list[str]:
        out = []
        if self.pins_fraction > self.max_fraction:
            out.append(f"drops {self.pins_dropped} of {self.pins_before} pins ({self.pins_fraction:.0%}), "
                       f"more than control.max_drop_fraction ({self.max_fraction:.0%})")
        if self.stamps_fraction > self.max_fraction:
            out.append(f"drops {self.stamps_dropped} of {self.stamps_before} stamps ({self.stamps_fraction:.0%}), "
                       f"more than control.max_drop_fraction ({self.max_fraction:.0%})")
        return out

    def as_dict(self) -> dict:
        return {**asdict(self), "unsafe": self.unsafe, "reasons": self.reasons()}


def plan_drop(pins_before: Mapping[str, str], pins_after: Mapping[str, str],
              stamps_before: Mapping[str, object] | set[str], stamps_after: Mapping[str, object] | set[str],
              max_fraction: float) -> DropPlan:
    """Count what the candidate removes. Runs in a worker thread for large tables.

    For a large table a random sample decides a clearly safe candidate (pins_exact False,
    pins_dropped an estimate); otherwise the pin scan stops once enough pins are known to
    stay for the candidate to be safe (pins_exact False, pins_dropped an upper bound). A
    refused candidate always has the exact count.
    """
    allowed = int(max_fraction * len(pins_before))           # dropped > allowed is unsafe
    estimate = _clearly_safe_estimate(pins_before, pins_after, max_fraction)
    if estimate is not None:
        dropped, exact = estimate, False
    else:
        dropped, exact = count_missing(pins_before, pins_after, enough_kept=len(pins_before) - allowed)
    return DropPlan(
        pins_before=len(pins_before), pins_after=len(pins_after),
        pins_dropped=dropped, pins_exact=exact,
        stamps_before=len(stamps_before), stamps_after=len(stamps_after),
        stamps_dropped=len(set(stamps_before) - set(stamps_after)),
        max_fraction=max_fraction,
    )


def _clearly_safe_estimate(pins_before: Mapping[str, str], pins_after: Mapping[str, str],
                           max_fraction: float) -> int | None:
    """The estimated number of dropped pins if a sample shows the candidate is clearly
    safe; None when the pins must be counted."""
    n = len(pins_before)
    if n < SAMPLE_FROM or pins_before is pins_after:
        return None
    keys: list[str] = []
    it = iter(pins_before)
    while len(keys) < n:                       # in slices: the GIL goes back between them
        keys.extend(islice(it, SLICE_ITEMS * 16))
    sample = random.sample(keys, SAMPLE_SIZE)
    del keys
    share = 1.0 - sum(map(pins_after.__contains__, sample)) / SAMPLE_SIZE
    worst_sigma = 0.5 / math.sqrt(SAMPLE_SIZE)
    if share + SAMPLE_SIGMAS * worst_sigma >= max_fraction:
        return None
    return round(share * n)
