"""A large pin table rebuilt so that workers forked from the supervisor keep sharing it
while they serve.

Measured (a child forked from a process holding a million-pin snapshot, routing 10,000
distinct tenants, /proc/self/smaps_rollup): with the table as the validator builds it,
the child's first lookup of each tenant copied a page into it, 31 MiB for 10,000; over a
worker's life, most of the table per worker (about 110 MB per million pins). Two things
write to the table's pages on a lookup, and both must go:

- the dict is cloned from orjson's parse with update() (fast, and the reload budget
  needs that), and such a dict's lookup takes and drops a reference to the stored key;
  a dict built by insertion does not;
- each pin's value is its own string object as parsed, and a lookup returns it, taking a
  reference; one shared object per stamp name is written to instead.

With both (a dict built by insertion, the values mapped to the stamp names' objects) the
same child copied 0.15 MiB. The rebuild costs 1-2.5 s per million pins here, more than
the reload budget leaves: so the supervisor does it after a reload is served, in a
thread, a slice at a time, and then forks its workers again from the rebuilt table (a
new generation; the old one drains as on any generation change).
"""

from __future__ import annotations

from typing import Callable

# Pins per slice: one C call each (a few ms), so the supervisor's event loop runs between.
SLICE = 20_000


def rebuilt(table: dict[str, str], names: dict[str, str],
            stop: Callable[[], bool] = lambda: False) -> dict[str, str] | None:
    """The same pins in the same order, in a dict built by insertion, each value that is a
    key of `names` replaced by that key's object. Blocks (run it in a thread). None when
    `stop()` said to stop first (the table is about to be replaced)."""
    get = names.get
    keys = list(table)
    out: dict[str, str] = {}
    for start in range(0, len(keys), SLICE):
        if stop():
            return None
        part = keys[start:start + SLICE]
        values = list(map(table.__getitem__, part))
        out.update(zip(part, map(get, values, values)))
    return out
