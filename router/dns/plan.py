"""Plan the difference between the desired sets and what the server holds; check it.

Rules kept here (docs/dns.md, "Safety rules"):

- Only owned keys change. A key is owned when its ownership TXT record names our
  owner id. A key with records but no ownership record, or with another owner's, is
  skipped and reported: it is never touched.
- A key the config asks for that the server lacks is created together with its
  ownership record (unless another owner claimed it).
- An owned key the config no longer names is deleted with its ownership record (policy
  `sync` only). A *held* key (see `desired`) is never deleted.
- Policies: `sync` creates, updates and deletes; `upsert-only` does not delete;
  `create-only` only creates. What a policy holds back is listed as skipped.
- Safety: once at least `min_owned_records` resource records are owned, a plan that
  updates or deletes more than `max_change_fraction` of them is refused unless forced.
  Creates do not count. Each value, Route 53 weighted set and LUA record counts as one
  resource record; ownership records do not count.
- Provider rules (Route 53's limits) are problems no --force overrides.

A `Change` carries the whole old and new content of its key, ownership record included,
so a provider can write it as one compare-and-set on the old content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from router.dns.desired import Desired
from router.dns.errors import PlanInvalid, PlanRefused
from router.dns.model import (DesiredSet, Key, Record, ZoneState, count_values, owner_record,
                              parse_owner, record_lines, value_rows)

Action = Literal["create", "update", "delete"]
Render = Callable[[DesiredSet], tuple[Record, ...]]
Rules = Callable[[Key, tuple[Record, ...]], list[str]]

_ALLOWED: dict[str, frozenset[str]] = {
    "sync": frozenset({"create", "update", "delete"}),
    "upsert-only": frozenset({"create", "update"}),
    "create-only": frozenset({"create"}),
}


@dataclass(frozen=True)
class Limits:
    max_change_fraction: float = 0.3
    min_owned_records: int = 10


@dataclass(frozen=True)
class Change:
    action: Action
    key: Key
    old: tuple[Record, ...]
    new: tuple[Record, ...]

    @property
    def touched(self) -> int:
        """Resource records of the old content this change updates or deletes."""
        return len(value_rows(_data(self.old)) - value_rows(_data(self.new)))


@dataclass(frozen=True)
class Skip:
    key: Key
    reason: str


@dataclass(frozen=True)
class Plan:
    zone: str
    owner_id: str
    policy: str
    changes: tuple[Change, ...]
    skipped: tuple[Skip, ...] = ()
    notes: tuple[tuple[Key, str], ...] = ()
    problems: tuple[str, ...] = ()
    owned_records: int = 0
    limits: Limits = field(default_factory=Limits)

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def touched_records(self) -> int:
        return sum(c.touched for c in self.changes)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            out[change.action] += 1
        return out

    def unsafe_reason(self) -> str | None:
        owned, touched = self.owned_records, self.touched_records
        limit = self.limits.max_change_fraction
        if owned < self.limits.min_owned_records or touched <= limit * owned:
            return None
        return (f"the plan updates or deletes {touched} of {owned} owned records "
                f"({touched / owned:.0%}), over max_change_fraction {limit:.0%}; "
                f"check the registry, then run with --force to apply it")

    def raise_if_unsafe(self, force: bool = False) -> None:
        if self.problems:
            raise PlanInvalid("the provider would reject this plan: " + "; ".join(self.problems))
        reason = self.unsafe_reason()
        if reason and not force:
            raise PlanRefused(reason)

    def render(self) -> str:
        lines = [f"Plan for {self.zone} (owner {self.owner_id}, policy {self.policy}):"]
        marks = {"create": "+", "update": "~", "delete": "-"}
        for change in self.changes:
            name, rtype = change.key
            lines.append(f"  {marks[change.action]} {change.action} {name} {rtype}")
            old, new = set(record_lines(change.old)), set(record_lines(change.new))
            for line in dict.fromkeys(record_lines(change.old + change.new)):
                mark = " " if line in old and line in new else ("-" if line in old else "+")
                lines.append(f"      {mark} {line}")
        for skip in self.skipped:
            lines.append(f"  ! skip {skip.key[0]} {skip.key[1]}: {skip.reason}")
        for key, note in self.notes:
            lines.append(f"  * note {key[0]} {key[1]}: {note}")
        for problem in self.problems:
            lines.append(f"  x problem: {problem}")
        if self.empty:
            lines.append("  no changes")
        else:
            c = self.counts()
            lines.append(f"  {len(self.changes)} changes: {c['create']} create, {c['update']} update, "
                         f"{c['delete']} delete; {self.touched_records} of {self.owned_records} owned "
                         f"records updated or deleted (refused over {self.limits.max_change_fraction:.0%} "
                         f"once {self.limits.min_owned_records} are owned)")
        reason = self.unsafe_reason()
        if reason:
            lines.append(f"  REFUSED without --force: {reason}")
        return "\n".join(lines)


def _data(records: tuple[Record, ...]) -> tuple[Record, ...]:
    return tuple(r for r in records if parse_owner(r) is None)


def build_plan(desired: Desired, state: ZoneState, render: Render, *, owner_id: str,
               policy: str, zone: str, limits: Limits = Limits(),
               rules: Rules | None = None) -> Plan:
    changes: list[Change] = []
    skipped: list[Skip] = []
    allowed = _ALLOWED[policy]

    def propose(change: Change) -> None:
        if change.action in allowed:
            changes.append(change)
        else:
            skipped.append(Skip(change.key, f"policy {policy} does not {change.action}"))

    for key in sorted(desired.sets):
        wanted = desired.sets[key]
        current = state.records.get(key, ())
        owner = state.owners.get(key)
        if owner is not None and owner != owner_id:
            skipped.append(Skip(key, f"owned by {owner}"))
            continue
        if owner is None and current:
            skipped.append(Skip(key, "exists without an ownership record; not ours to change"))
            continue
        new = tuple(sorted(render(wanted) + (owner_record(key, owner_id, wanted.ttl),)))
        old = state.held(key)
        if old == new:
            continue
        propose(Change("create" if not current else "update", key, old, new))

    for key in sorted(k for k, o in state.owners.items() if o == owner_id):
        if key not in desired.configured:
            propose(Change("delete", key, state.held(key), ()))

    problems: list[str] = []
    if rules is not None:
        for change in changes:
            problems.extend(rules(change.key, _data(change.new)))
    owned = sum(count_values(state.records.get(k, ())) for k, o in state.owners.items() if o == owner_id)
    return Plan(zone=zone, owner_id=owner_id, policy=policy, changes=tuple(changes),
                skipped=tuple(skipped), notes=desired.notes, problems=tuple(problems),
                owned_records=owned, limits=limits)
