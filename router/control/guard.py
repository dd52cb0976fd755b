"""The drop guard: plan what a candidate config would remove, refuse too much unless forced.

A control plane that serves an empty tenants table, or a file truncated by a bad deploy,
is valid config that would send every pinned tenant to hash placement (or 404). Such a
candidate is refused when it removes more than `control.max_drop_fraction` of the pins or
of the stamps serving now; the operator can push it anyway with force. The plan is
computed against the config being served, and the threshold is the running config's,
so a candidate cannot lower the bar it is judged by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from router.control.bulk import count_missing


@dataclass(frozen=True)
class DropPlan:
    pins_before: int
    pins_after: int
    pins_dropped: int        # tenants pinned now and not pinned by the candidate (at most, if not exact)
    stamps_before: int
    stamps_after: int
    stamps_dropped: int      # stamps in the current config and not in the candidate
    max_fraction: float
    pins_exact: bool = True

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

    The pin scan stops once enough pins are known to stay for the candidate to be safe,
    so for an accepted candidate `pins_dropped` may be an upper bound (pins_exact False);
    a refused candidate always has the exact count.
    """
    allowed = int(max_fraction * len(pins_before))           # dropped > allowed is unsafe
    dropped, exact = count_missing(pins_before, pins_after, enough_kept=len(pins_before) - allowed)
    return DropPlan(
        pins_before=len(pins_before), pins_after=len(pins_after),
        pins_dropped=dropped, pins_exact=exact,
        stamps_before=len(stamps_before), stamps_after=len(stamps_after),
        stamps_dropped=len(set(stamps_before) - set(stamps_after)),
        max_fraction=max_fraction,
    )
