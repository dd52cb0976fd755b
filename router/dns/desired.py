"""The record sets the config asks for, given the stamps and which of them are published.

Rules kept here (docs/dns.md):

- A `[[records]]` entry takes the stamps of its region (all stamps without one) whose
  weight is above 0 and that have something to publish for its type: an IPv4 address
  for A, an IPv6 address for AAAA; SRV needs only the entry's target and port.
- Of those candidates, the published ones (see `hysteresis`) make the set.
- Never an empty set: when no candidate is published, every candidate is kept. Serving
  possibly-down stamps beats answering NODATA for the name (Route 53 does the same
  when all health checks of a weighted set fail).
- No candidate at all (no stamp of the region, no address of the family): the key is
  *held*: whatever the server has stays as it is and is not deleted.

Weights: SRV carries the stamp weight in its weight field. For address records each
answer gets the stamp's weight split over the stamp's addresses of that family, scaled
by the least common multiple of the address counts so weights stay whole numbers.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from router.dns.config import RecordEntry, absolute_name, srv_target
from router.dns.model import DesiredSet, Key, Member, StampInfo

_FAMILY = {"A": 4, "AAAA": 6}


@dataclass(frozen=True)
class Desired:
    sets: dict[Key, DesiredSet]
    held: frozenset[Key]
    notes: tuple[tuple[Key, str], ...] = field(default=())

    @property
    def configured(self) -> frozenset[Key]:
        return frozenset(self.sets) | self.held


def addresses(stamp: StampInfo, rtype: str) -> tuple[str, ...]:
    """The stamp's public addresses of the record type's family, in canonical text."""
    out = []
    for value in stamp.public:
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            continue
        if addr.version == _FAMILY[rtype]:
            out.append(addr.compressed)
    return tuple(dict.fromkeys(out))


def _members(entry: RecordEntry, stamps: Iterable[StampInfo], zone: str) -> tuple[Member, ...]:
    stamps = list(stamps)
    if entry.type == "SRV":
        return tuple(sorted(
            Member(s.name, f"{entry.priority} {s.weight} {entry.port} {srv_target(entry.target, s.name, zone)}", s.weight)
            for s in stamps))
    per_stamp = {s.name: addresses(s, entry.type) for s in stamps}
    scale = math.lcm(*(len(a) for a in per_stamp.values())) if per_stamp else 1
    return tuple(sorted(
        Member(s.name, addr, s.weight * scale // len(per_stamp[s.name]))
        for s in stamps for addr in per_stamp[s.name]))


def _is_candidate(entry: RecordEntry, stamp: StampInfo) -> bool:
    if entry.region is not None and stamp.region != entry.region:
        return False
    if stamp.weight <= 0:
        return False
    return entry.type == "SRV" or bool(addresses(stamp, entry.type))


def desired_sets(entries: Sequence[RecordEntry], stamps: Sequence[StampInfo],
                 published: frozenset[str], *, zone: str, ttl: int) -> Desired:
    sets: dict[Key, DesiredSet] = {}
    held: set[Key] = set()
    notes: list[tuple[Key, str]] = []
    for entry in entries:
        key = (absolute_name(entry.name, zone), entry.type)
        candidates = [s for s in stamps if _is_candidate(entry, s)]
        if not candidates:
            held.add(key)
            where = f"region {entry.region}" if entry.region else "the registry"
            notes.append((key, f"no stamp of {where} has a weight above 0 and an answer of this type; leaving it as it is"))
            continue
        live = [s for s in candidates if s.name in published]
        if not live:
            live = candidates
            notes.append((key, f"no stamp is healthy; keeping all {len(candidates)} rather than an empty set"))
        sets[key] = DesiredSet(key, entry.ttl if entry.ttl is not None else ttl, _members(entry, live, zone))
    return Desired(sets, frozenset(held), tuple(notes))
