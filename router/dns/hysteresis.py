"""Whether each stamp is published, moved on by each successful registry read.

Rules kept here:

1. Only successful registry reads move a stamp's state; a failed read is not a step.
2. A healthy read publishes a stamp at once (restore when healthy again).
3. A published stamp leaves only after `remove_after` unhealthy reads in a row.
4. A stamp seen for the first time is published only if it is healthy: a stamp never
   known to work is not put into DNS. (Counts are kept between runs: router.dns.counts.)
5. A stamp gone from the registry is forgotten.

The transitions are the table `_NEXT`; "counting" moves to "down" when the count of
unhealthy reads reaches `remove_after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

NEW, UP, COUNTING, DOWN = "new", "up", "counting", "down"
PUBLISHED = frozenset({UP, COUNTING})

# (state, read healthy?) -> next state, before the count check.
_NEXT: dict[tuple[str, bool], str] = {
    (NEW, True): UP,
    (NEW, False): DOWN,
    (UP, True): UP,
    (UP, False): COUNTING,
    (COUNTING, True): UP,
    (COUNTING, False): COUNTING,
    (DOWN, True): UP,
    (DOWN, False): DOWN,
}


@dataclass(frozen=True)
class StampMemory:
    state: str
    failures: int = 0

    @property
    def published(self) -> bool:
        return self.state in PUBLISHED


def step(memory: StampMemory | None, healthy: bool, remove_after: int) -> StampMemory:
    state = memory.state if memory else NEW
    failures = memory.failures if memory else 0
    nxt = _NEXT[(state, healthy)]
    failures = 0 if healthy else failures + 1
    if nxt == COUNTING and failures >= remove_after:
        nxt = DOWN
    return StampMemory(nxt, failures)


def advance(memory: Mapping[str, StampMemory], reads: Iterable[tuple[str, bool]],
            remove_after: int) -> dict[str, StampMemory]:
    """The memory after one successful read: `reads` is (stamp, healthy) for every stamp."""
    return {name: step(memory.get(name), healthy, remove_after) for name, healthy in reads}


def published(memory: Mapping[str, StampMemory]) -> frozenset[str]:
    return frozenset(name for name, m in memory.items() if m.published)


def to_json(memory: Mapping[str, StampMemory]) -> dict:
    return {"stamps": {n: {"state": m.state, "failures": m.failures} for n, m in sorted(memory.items())}}


def from_json(doc: object) -> dict[str, StampMemory]:
    """Memory from a state file; anything unreadable is left out (that stamp starts new)."""
    out: dict[str, StampMemory] = {}
    stamps = doc.get("stamps") if isinstance(doc, dict) else None
    if not isinstance(stamps, dict):
        return out
    for name, entry in stamps.items():
        if (isinstance(entry, dict) and entry.get("state") in (UP, COUNTING, DOWN)
                and isinstance(entry.get("failures"), int) and entry["failures"] >= 0):
            out[name] = StampMemory(entry["state"], entry["failures"])
    return out
