"""The provider interface: read the zone, apply a change set. One template, three servers.

A provider subclass declares what it supports as class attributes, renders desired sets
into its native records, classifies what it reads back into keys, and implements two
methods: `_read_records` and `_apply`. The template around them refuses an unsafe plan,
and reads every write back: a server that answered success but holds something else is
a VerifyError (BIND, for one, answers NOERROR to an update it ignored; RFC 2136 3.4.2.2).

Constructors do no I/O (no sockets, no key files): a provider is built while the config
is checked, and fails there only on what the config alone shows. Messages never carry a
secret.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Iterable

from router.dns.errors import ConflictError, VerifyError
from router.dns.model import DesiredSet, Key, Record, ZoneState, build_state, make_record, record_lines
from router.dns.plan import Change, Plan


class Provider(abc.ABC):
    kind: ClassVar[str]
    SUPPORTS: ClassVar[frozenset[str]] = frozenset({"A", "AAAA", "SRV"})
    # Whether A/AAAA answers carry the stamps' weights (else only SRV does).
    WEIGHTED_ADDRESSES: ClassVar[bool] = False

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.zone: str = cfg.zone

    def unsupported(self, types: Iterable[str]) -> list[str]:
        return sorted(set(types) - self.SUPPORTS)

    @abc.abstractmethod
    def describe(self) -> str:
        """Where this provider writes, for plans and logs (never a secret)."""

    def render(self, desired: DesiredSet) -> tuple[Record, ...]:
        return (make_record(desired.name, desired.type, desired.ttl, [m.value for m in desired.members]),)

    def classify(self, record: Record) -> Key | None:
        return (record.name, record.type) if record.type in self.SUPPORTS else None

    def rules(self, key: Key, records: tuple[Record, ...]) -> list[str]:
        """What the server would reject about a key's new content; none by default."""
        return []

    async def read(self) -> ZoneState:
        return build_state(await self._read_records(), self.classify)

    async def apply(self, plan: Plan, *, force: bool = False) -> int:
        """Apply a plan and verify it; return the number of changes applied."""
        plan.raise_if_unsafe(force)
        if plan.empty:
            return 0
        await self._apply(plan.changes)
        await self.verify(plan.changes)
        return len(plan.changes)

    async def verify(self, changes: tuple[Change, ...]) -> None:
        state = await self.read()
        wrong = []
        for change in changes:
            held = state.held(change.key)
            if held != tuple(sorted(change.new)):
                wrong.append(f"{change.key[0]} {change.key[1]}: server holds {_show(held)}, "
                             f"expected {_show(change.new)}")
        if wrong:
            raise VerifyError(f"{self.describe()}: read back after writing differs "
                              f"(the server accepted the write but did not apply it: a CNAME "
                              f"or other conflicting data at the name?): " + "; ".join(wrong))
        await self._check_answers(changes)

    async def _assert_unchanged(self, changes: tuple[Change, ...]) -> None:
        """Check-then-write for servers without prerequisites: read again, compare."""
        state = await self.read()
        for change in changes:
            if state.held(change.key) != tuple(sorted(change.old)):
                raise ConflictError(f"{self.describe()}: {change.key[0]} {change.key[1]} changed since it was read")

    async def _check_answers(self, changes: tuple[Change, ...]) -> None:
        """Query what was written, for servers whose API accepts records it cannot serve."""

    async def close(self) -> None:
        """Release connections; the provider may be used again afterwards."""

    @abc.abstractmethod
    async def _read_records(self) -> list[Record]:
        """Every record of the zone, names absolute and lower case."""

    @abc.abstractmethod
    async def _apply(self, changes: tuple[Change, ...]) -> None:
        """Write the changes; raise ConflictError if the server changed since it was read."""


def _show(records: Iterable[Record]) -> str:
    lines = record_lines(records)
    return "[" + ", ".join(lines) + "]" if lines else "nothing"


def by_ident(records: Iterable[Record]) -> dict[tuple, Record]:
    return {r.ident: r for r in records}


def diff_sets(change: Change) -> list[tuple[Record | None, Record | None]]:
    """(old, new) pairs per native set of a change; None where one side lacks the set."""
    old, new = by_ident(change.old), by_ident(change.new)
    return [(old.get(i), new.get(i)) for i in sorted(set(old) | set(new), key=lambda t: tuple(map(str, t)))]
