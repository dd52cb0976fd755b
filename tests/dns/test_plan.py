"""Planning: ownership, policies, the change-fraction limit, the readable diff. Pure."""

from __future__ import annotations

import pytest

from router.dns.desired import Desired
from router.dns.errors import PlanInvalid, PlanRefused
from router.dns.model import DesiredSet, Member, build_state, make_record, owner_record
from router.dns.plan import Limits, build_plan
from tests.dns.support import MemoryProvider

ZONE = "example.test."
RENDER = MemoryProvider().render
CLASSIFY = MemoryProvider().classify
ME = "edge-eu-1"


def want(name, *addresses, ttl=30, rtype="A"):
    key = (f"{name}.{ZONE}", rtype)
    return key, DesiredSet(key, ttl, tuple(Member(f"s{i}", a, 100) for i, a in enumerate(addresses)))


def desired(*pairs, held=()):
    return Desired(dict(pairs), frozenset(held))


def a(name, *addresses, ttl=30):
    return make_record(f"{name}.{ZONE}", "A", ttl, addresses)


def owned(name, owner=ME, ttl=30, rtype="A"):
    return owner_record((f"{name}.{ZONE}", rtype), owner, ttl)


def state(*records):
    return build_state(records, CLASSIFY)


def plan(d, s, *, policy="sync", limits=Limits(0.3, 0), rules=None):
    return build_plan(d, s, RENDER, owner_id=ME, policy=policy, zone=ZONE, limits=limits, rules=rules)


def test_a_new_name_is_created_with_its_ownership_record():
    p = plan(desired(want("api", "192.0.2.1")), state())
    (change,) = p.changes
    assert change.action == "create" and change.old == ()
    assert set(change.new) == {a("api", "192.0.2.1"), owned("api")}


def test_an_owned_name_is_updated_and_an_unchanged_one_left_alone():
    s = state(a("api", "192.0.2.1", "192.0.2.2"), owned("api"), a("www", "192.0.2.9"), owned("www"))
    p = plan(desired(want("api", "192.0.2.1"), want("www", "192.0.2.9")), s, limits=Limits(1.0, 0))
    (change,) = p.changes
    assert change.action == "update" and change.key == (f"api.{ZONE}", "A") and change.touched == 1


def test_another_owners_name_and_an_unowned_name_are_skipped_never_changed():
    s = state(a("theirs", "192.0.2.5"), owned("theirs", owner="edge-us-1"), a("manual", "192.0.2.6"),
              owned("gone", owner="edge-us-1"))
    p = plan(desired(want("theirs", "192.0.2.1"), want("manual", "192.0.2.1"), want("gone", "192.0.2.1")), s)
    assert p.changes == ()
    assert {(k[0], r) for k, r in ((s.key, s.reason) for s in p.skipped)} == {
        (f"theirs.{ZONE}", "owned by edge-us-1"),
        (f"gone.{ZONE}", "owned by edge-us-1"),
        (f"manual.{ZONE}", "exists without an ownership record; not ours to change"),
    }


def test_an_unreadable_ownership_record_protects_its_name():
    s = state(make_record(f"_stamp-owner-a.api.{ZONE}", "TXT", 30, ['"heritage=stamp-router,owner="']))
    p = plan(desired(want("api", "192.0.2.1")), s)
    assert p.changes == () and p.skipped[0].reason == "owned by (unreadable)"


def test_an_owned_name_missing_its_records_is_recreated_under_its_ownership():
    p = plan(desired(want("api", "192.0.2.1")), state(owned("api")))
    (change,) = p.changes
    assert change.action == "create" and change.old == (owned("api"),)


def test_owned_names_left_out_of_the_config_are_deleted_but_held_names_are_not():
    s = state(a("old", "192.0.2.1"), owned("old"), a("held", "192.0.2.2"), owned("held"))
    p = plan(desired(held=[(f"held.{ZONE}", "A")]), s, limits=Limits(1.0, 0))
    (change,) = p.changes
    assert change.action == "delete" and change.key == (f"old.{ZONE}", "A") and change.new == ()


@pytest.mark.parametrize("policy, actions, skipped", [
    ("sync", ["create", "delete", "update"], []),
    ("upsert-only", ["create", "update"], ["policy upsert-only does not delete"]),
    ("create-only", ["create"], ["policy create-only does not delete", "policy create-only does not update"]),
])
def test_policies_hold_back_what_they_do_not_allow(policy, actions, skipped):
    s = state(a("upd", "192.0.2.1"), owned("upd"), a("del", "192.0.2.2"), owned("del"))
    p = plan(desired(want("new", "192.0.2.3"), want("upd", "192.0.2.4")), s, policy=policy, limits=Limits(1.0, 0))
    assert sorted(c.action for c in p.changes) == actions
    assert sorted(sk.reason for sk in p.skipped) == skipped


def test_more_than_max_change_fraction_is_refused_without_force():
    # Ten owned records in ten names; the registry suddenly lists only one stamp per name.
    records, wants = [], []
    for i in range(5):
        records += [a(f"n{i}", "192.0.2.1", "192.0.2.2"), owned(f"n{i}")]
        wants.append(want(f"n{i}", "192.0.2.1"))
    s = state(*records)
    p = plan(desired(*wants), s, limits=Limits(0.3, 10))
    assert p.owned_records == 10 and p.touched_records == 5
    with pytest.raises(PlanRefused, match=r"updates or deletes 5 of 10 owned records \(50%\), over max_change_fraction 30%"):
        p.raise_if_unsafe()
    p.raise_if_unsafe(force=True)
    assert "REFUSED without --force" in p.render()
    # Three of ten is within the limit.
    assert plan(desired(*wants[:3], *[want(f"n{i}", "192.0.2.1", "192.0.2.2") for i in (3, 4)]), s,
                limits=Limits(0.3, 10)).unsafe_reason() is None


def test_the_fraction_check_waits_for_min_owned_records_and_ignores_creates():
    s = state(a("api", "192.0.2.1", "192.0.2.2"), owned("api"))
    p = plan(desired(want("api", "192.0.2.1"), want("new", "192.0.2.9")), s, limits=Limits(0.3, 10))
    assert p.owned_records == 2 and p.touched_records == 1 and p.unsafe_reason() is None
    assert plan(desired(want("api", "192.0.2.1")), s, limits=Limits(0.3, 2)).unsafe_reason() is not None


def test_provider_rules_make_a_plan_invalid_even_with_force():
    p = plan(desired(want("api", "192.0.2.1")), state(), rules=lambda key, records: [f"{key[0]}: no"])
    with pytest.raises(PlanInvalid, match="api.example.test.: no"):
        p.raise_if_unsafe(force=True)


def test_the_plan_reads_as_a_diff():
    s = state(a("api", "192.0.2.1", "192.0.2.2"), owned("api"), a("old", "192.0.2.7"), owned("old"))
    p = plan(desired(want("api", "192.0.2.1", "192.0.2.3"), want("new", "192.0.2.9")), s, limits=Limits(1.0, 0))
    assert p.render().splitlines() == [
        f"Plan for {ZONE} (owner {ME}, policy sync):",
        f"  ~ update api.{ZONE} A",
        f"        api.{ZONE} 30 A 192.0.2.1",
        f"      - api.{ZONE} 30 A 192.0.2.2",
        f"      + api.{ZONE} 30 A 192.0.2.3",
        f'        _stamp-owner-a.api.{ZONE} 30 TXT "heritage=stamp-router,owner={ME}"',
        f"  + create new.{ZONE} A",
        f"      + new.{ZONE} 30 A 192.0.2.9",
        f'      + _stamp-owner-a.new.{ZONE} 30 TXT "heritage=stamp-router,owner={ME}"',
        f"  - delete old.{ZONE} A",
        f"      - old.{ZONE} 30 A 192.0.2.7",
        f'      - _stamp-owner-a.old.{ZONE} 30 TXT "heritage=stamp-router,owner={ME}"',
        "  3 changes: 1 create, 1 update, 1 delete; 2 of 3 owned records updated or deleted "
        "(refused over 100% once 0 are owned)",
    ]
    assert plan(desired(), state()).render().endswith("no changes")


def test_a_ttl_change_is_an_update_of_every_record():
    s = state(a("api", "192.0.2.1", "192.0.2.2"), owned("api"))
    p = plan(desired(want("api", "192.0.2.1", "192.0.2.2", ttl=60)), s, limits=Limits(1.0, 0))
    assert [c.action for c in p.changes] == ["update"] and p.touched_records == 2
