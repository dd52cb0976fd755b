"""The placement hash: documented so that every instance (and any other tool) computes it alike.

    key_hash(s)   = first 8 bytes of BLAKE2b-64(utf8(s)), read big-endian, as an unsigned int
    mix64(x)      = the SplitMix64 finalizer (Steele, Lea, Flood 2014) over 64-bit unsigned x
    unit(x)       = ((x >> 11) + 0.5) / 2**53, a float strictly inside (0, 1)
    hrw_score     = weight / -ln(unit(mix64(key ^ key_hash(stamp name))))

The highest score wins (weighted rendezvous hashing, Schindelhauer & Schomaker 2005); a
stamp's expected share is its weight over the sum of weights. Nothing here depends on the
process (Python's own hash() is salted per process, so it is never used).
"""

from __future__ import annotations

import hashlib
import math

MASK64 = (1 << 64) - 1
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_log = math.log


def key_hash(value: str) -> int:
    return _from_bytes(_blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


def mix64(x: int) -> int:
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK64
    return x ^ (x >> 31)


def hrw_score(key: int, seed: int, weight: int) -> float:
    if weight <= 0:
        return -1.0
    u = ((mix64(key ^ seed) >> 11) + 0.5) / 9007199254740992.0
    return weight / -_log(u)


def hrw_pick(key: int, candidates: tuple[tuple[int, int], ...]) -> int:
    """Index of the winning candidate among (seed, weight) pairs; -1 if none has weight."""
    best, best_i = 0.0, -1
    for i, (seed, weight) in enumerate(candidates):
        score = hrw_score(key, seed, weight)
        if score > best:
            best, best_i = score, i
    return best_i
