"""Placement of unpinned tenants: an O(1) lookup table filled by weighted rendezvous hashing.

Why not plain Maglev: Maglev's permutation fill keeps a lookup table even, but when a
stamp joins or leaves it also moves a small share of tenants between the stamps that
stayed. For a cell router that is a tenant silently changing stamps, which breaks
"never guess where a tenant lives". So the table keeps Maglev's shape (a fixed number of
slots, a tenant's slot is its hash modulo the size, a lookup is one index) while each
slot is owned by the rendezvous (HRW) winner over the stamps' weights. Consequences,
tested as properties: adding a stamp moves tenants only onto it, about its share;
removing a stamp moves only its own tenants; shares follow weights.

    slot(tenant)  = key_hash(tenant) mod TABLE_SIZE
    owner(slot)   = argmax over stamps of hrw_score(slot, key_hash(stamp name), weight)

TABLE_SIZE is part of the placement contract: changing it moves tenants.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from router.core.hashing import MASK64, key_hash

TABLE_SIZE = 16384
_UNIT = 9007199254740992.0


@dataclass(frozen=True, slots=True)
class Placement:
    names: tuple[str, ...]          # stamps that take placements, in table-index order
    table: tuple[int, ...]          # TABLE_SIZE entries, each an index into names

    def lookup(self, tenant: str) -> str | None:
        if not self.names:
            return None
        return self.names[self.table[key_hash(tenant) % TABLE_SIZE]]

    def shares(self) -> dict[str, float]:
        counts = [0] * len(self.names)
        for idx in self.table:
            counts[idx] += 1
        return {n: c / TABLE_SIZE for n, c in zip(self.names, counts)}


@lru_cache(maxsize=16)
def build_placement(members: tuple[tuple[str, int], ...]) -> Placement:
    """Build the table for (name, weight) pairs; weight 0 members take no slots.

    Cached: reloads that change only pins reuse the table.
    """
    import math
    log = math.log
    live = tuple((name, w) for name, w in sorted(members) if w > 0)
    if not live:
        return Placement((), ())
    best = [0.0] * TABLE_SIZE
    owner = [0] * TABLE_SIZE
    for idx, (name, weight) in enumerate(live):
        seed = key_hash(name)
        for slot in range(TABLE_SIZE):
            # mix64 inlined: this loop runs TABLE_SIZE x stamps times per build.
            x = slot ^ seed
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK64
            x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK64
            x ^= x >> 31
            score = weight / -log(((x >> 11) + 0.5) / _UNIT)
            if score > best[slot]:
                best[slot] = score
                owner[slot] = idx
    return Placement(tuple(n for n, _ in live), tuple(owner))
