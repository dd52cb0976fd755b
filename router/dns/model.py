"""The values every part of the updater shares: record keys, records, zone state.

A *key* is one logical record the config asks for: an absolute, lower-case name and a
type (A, AAAA or SRV). What a server holds for a key is a tuple of `Record`s in
presentation format: one plain RRset on BIND and Knot, one LUA RRset on PowerDNS, one
weighted set per stamp on Route 53. Plans compare those tuples, so each provider only
has to say how it renders a desired set and how it classifies what it reads.

Ownership lives in a TXT record beside each owned key, named `_stamp-owner-<type>.<name>`
(one per key, so owners never share an RRset) and holding
`"heritage=stamp-router,owner=<owner_id>"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

Key = tuple[str, str]                 # (absolute lower-case name, logical type)

OWNER_PREFIX = "_stamp-owner-"
HERITAGE = "heritage=stamp-router"
UNREADABLE_OWNER = "(unreadable)"


@dataclass(frozen=True)
class Record:
    """One answer set as a server holds it; values sorted and unique."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]
    set_id: str | None = None         # Route 53 SetIdentifier
    weight: int | None = None         # Route 53 Weight

    @property
    def ident(self) -> tuple[str, str, str | None]:
        """What a server addresses one set by: a write replaces or removes this."""
        return (self.name, self.type, self.set_id)

    def __lt__(self, other: "Record") -> bool:
        # Sorted tuples of records are compared as plans; a plain set and a weighted one
        # may differ only where one has None.
        return self._order() < other._order()

    def _order(self) -> tuple:
        return (self.name, self.type, self.set_id or "", self.weight or 0, self.ttl, self.values)

    def lines(self) -> list[str]:
        tag = f"  [set {self.set_id} weight {self.weight}]" if self.set_id is not None else ""
        return [f"{self.name} {self.ttl} {self.type} {v}{tag}" for v in self.values]


def make_record(name: str, rtype: str, ttl: int, values, *, set_id: str | None = None,
                weight: int | None = None) -> Record:
    return Record(name.lower(), rtype.upper(), int(ttl), tuple(sorted(set(values))), set_id, weight)


def count_values(records) -> int:
    return sum(len(r.values) for r in records)


def value_rows(records) -> set[tuple]:
    """Each resource record on its own: what the change-fraction check counts."""
    return {(r.name, r.type, r.ttl, r.set_id, r.weight, v) for r in records for v in r.values}


def record_lines(records) -> list[str]:
    """Presentation lines of records, data first and ownership records last."""
    lines = [line for r in records for line in r.lines()]
    return sorted(lines, key=lambda text: (text.startswith(OWNER_PREFIX), text))


def owner_name(key: Key) -> str:
    name, rtype = key
    return f"{OWNER_PREFIX}{rtype.lower()}.{name}"


def owner_value(owner_id: str) -> str:
    return f'"{HERITAGE},owner={owner_id}"'


def owner_record(key: Key, owner_id: str, ttl: int) -> Record:
    return make_record(owner_name(key), "TXT", ttl, [owner_value(owner_id)])


def parse_owner(record: Record) -> tuple[Key, str] | None:
    """The key and owner id an ownership TXT record speaks for, or None if it is none.

    A record under our prefix that does not parse belongs to nobody we know: it is
    reported as UNREADABLE_OWNER so that its key is never touched.
    """
    if record.type != "TXT" or not record.name.startswith(OWNER_PREFIX):
        return None
    label, _, rest = record.name.partition(".")
    rtype = label[len(OWNER_PREFIX):].upper()
    if not rtype or not rest:
        return None
    key = (rest, rtype)
    owners = set()
    for value in record.values:
        text = value.replace('" "', "").strip('"')
        fields = dict(part.partition("=")[::2] for part in text.split(","))
        if fields.get("heritage") == "stamp-router" and fields.get("owner"):
            owners.add(fields["owner"])
    return key, owners.pop() if len(owners) == 1 else UNREADABLE_OWNER


@dataclass(frozen=True)
class ZoneState:
    """What a provider read: records by key, and each owned key's ownership record."""

    records: Mapping[Key, tuple[Record, ...]] = field(default_factory=lambda: MappingProxyType({}))
    owner_records: Mapping[Key, Record] = field(default_factory=lambda: MappingProxyType({}))
    owners: Mapping[Key, str] = field(default_factory=lambda: MappingProxyType({}))

    def held(self, key: Key) -> tuple[Record, ...]:
        """Everything the updater would compare for `key`: its records and owner record."""
        owner = self.owner_records.get(key)
        return tuple(sorted(self.records.get(key, ()) + ((owner,) if owner else ())))


def build_state(records, classify) -> ZoneState:
    """Sort what a server holds into keys; `classify` maps a record to its key or None."""
    by_key: dict[Key, list[Record]] = {}
    owner_records: dict[Key, Record] = {}
    owners: dict[Key, str] = {}
    for record in records:
        parsed = parse_owner(record)
        if parsed is not None:
            key, owner = parsed
            owner_records[key] = record
            owners[key] = owner
            continue
        key = classify(record)
        if key is not None:
            by_key.setdefault(key, []).append(record)
    return ZoneState(
        records=MappingProxyType({k: tuple(sorted(v)) for k, v in by_key.items()}),
        owner_records=MappingProxyType(owner_records),
        owners=MappingProxyType(owners),
    )


@dataclass(frozen=True, order=True)
class Member:
    """One answer the config wants: a stamp's address (or SRV rdata) and its weight."""

    stamp: str
    value: str
    weight: int


@dataclass(frozen=True)
class DesiredSet:
    """The answers wanted for one key."""

    key: Key
    ttl: int
    members: tuple[Member, ...]

    @property
    def name(self) -> str:
        return self.key[0]

    @property
    def type(self) -> str:
        return self.key[1]


@dataclass(frozen=True)
class StampInfo:
    name: str
    region: str
    state: str
    weight: int
    public: tuple[str, ...]
    healthy: bool

    @property
    def dns_healthy(self) -> bool:
        """Healthy for DNS: the router says healthy and the operator has not set it offline."""
        return self.healthy and self.state != "offline"


@dataclass(frozen=True)
class Registry:
    version: str | None
    stamps: tuple[StampInfo, ...]
    source: str
