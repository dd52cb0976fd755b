"""The safety rules of docs/dns.md, each on its own, through whole sync passes
against an in-memory provider (the real servers repeat the ones that need a server)."""

from __future__ import annotations

import io

import orjson

from router.dns.errors import PlanRefused, RegistryError
from router.dns.model import Registry, make_record, owner_record
from router.dns.sync import EXIT_REFUSED, Updater
from tests.dns.conftest import FakeRegistry, make_config, stamp
from tests.dns.support import MemoryProvider, run
from tests.dns.servers import ZONE

PROVIDER = {"kind": "rfc2136", "server": "127.0.0.1:1", "zone": ZONE, "tsig_key_file": "unused.key"}
STAMPS = [stamp("eu-1", public=["203.0.113.10"]), stamp("eu-2", public=["203.0.113.20"])]
API = (f"api.{ZONE}", "A")


def setup(records=None, stamps=STAMPS, held=(), **sync):
    cfg = make_config(PROVIDER, records or [{"name": "api", "type": "A"}], owner_id="me", **sync)
    provider = MemoryProvider(records=held)
    registry = FakeRegistry(stamps)
    return Updater(cfg, provider, registry, out=io.StringIO()), provider, registry


def addresses(provider, key=API):
    return {v for r in run(provider.read()).records.get(key, ()) for v in r.values}


def test_a_failed_registry_read_changes_nothing_and_counts_nothing():
    upd, provider, registry = setup(remove_after=2)
    assert run(upd.sync_once()).result == "ok"
    registry.set_health("eu-2", False)
    assert run(upd.sync_once()).result == "ok"          # eu-2: one unhealthy read
    registry.error = RegistryError("registry http://x/stamps did not answer within 2s")
    for _ in range(3):
        result = run(upd.sync_once())
        assert result.result == "registry_error" and result.exit_code == 1
    assert provider.writes == 1 and addresses(provider) == {"203.0.113.10", "203.0.113.20"}
    registry.error = None                                # the second unhealthy read removes it
    run(upd.sync_once())
    assert addresses(provider) == {"203.0.113.10"}


def test_an_empty_registry_changes_nothing():
    upd, provider, registry = setup()
    run(upd.sync_once())
    registry.stamps = []
    result = run(upd.sync_once())
    assert result.result == "registry_error" and "lists no stamps" in result.message
    assert addresses(provider) == {"203.0.113.10", "203.0.113.20"}


def test_never_an_empty_set_all_unhealthy_keeps_them_all():
    upd, provider, registry = setup(remove_after=1)
    run(upd.sync_once())
    registry.set_health("eu-1", False)
    run(upd.sync_once())
    assert addresses(provider) == {"203.0.113.20"}
    registry.set_health("eu-2", False)
    result = run(upd.sync_once())
    assert addresses(provider) == {"203.0.113.10", "203.0.113.20"}
    assert "keeping all 2 rather than an empty set" in upd.out.getvalue()
    assert result.result == "ok"


def test_removal_after_n_failed_reads_in_a_row_and_restore_when_healthy():
    upd, provider, registry = setup(remove_after=3)
    run(upd.sync_once())
    registry.set_health("eu-2", False)
    seen = []
    for _ in range(3):
        run(upd.sync_once())
        seen.append("203.0.113.20" in addresses(provider))
    assert seen == [True, True, False]
    registry.set_health("eu-2", True)
    run(upd.sync_once())
    assert addresses(provider) == {"203.0.113.10", "203.0.113.20"}


def test_hysteresis_counts_survive_restarts_through_the_state_file(tmp_path):
    state_file = str(tmp_path / "state.json")
    upd, provider, registry = setup(remove_after=2, state_file=state_file)
    run(upd.sync_once())
    registry.set_health("eu-2", False)
    run(upd.sync_once())
    assert orjson.loads(open(state_file, "rb").read())["stamps"]["eu-2"] == {"state": "counting", "failures": 1}
    # A new process (an --once run from cron) continues the count instead of starting over.
    again = Updater(upd.cfg, provider, registry, out=upd.out)
    run(again.sync_once())
    assert addresses(provider) == {"203.0.113.10"}


def test_over_max_change_fraction_is_refused_without_force():
    many = [stamp(f"eu-{i}", public=[f"203.0.113.{i}"]) for i in range(1, 11)]
    upd, provider, registry = setup(stamps=many, remove_after=1, max_change_fraction=0.3, min_owned_records=10)
    assert run(upd.sync_once()).result == "ok"
    for i in range(1, 5):
        registry.set_health(f"eu-{i}", False)
    result = run(upd.sync_once())
    assert result.result == "refused" and result.exit_code == EXIT_REFUSED
    assert "updates or deletes 4 of 10 owned records (40%)" in result.message
    assert len(addresses(provider)) == 10 and provider.writes == 1
    forced = run(upd.sync_once(force=True))
    assert forced.result == "ok" and len(addresses(provider)) == 6


def test_apply_itself_refuses_an_unsafe_plan():
    upd, provider, registry = setup(stamps=[stamp("eu-1", public=["203.0.113.10"])], min_owned_records=1)
    held = (make_record(API[0], "A", 30, ["192.0.2.1", "192.0.2.2"]), owner_record(API, "me", 30))
    provider.held = {r.ident: r for r in held}

    async def attempt():
        state = await provider.read()
        plan = upd.plan(Registry("v", tuple(registry.stamps), "t"), frozenset({"eu-1"}), state)
        await provider.apply(plan)

    try:
        run(attempt())
    except PlanRefused as exc:
        assert "over max_change_fraction" in str(exc)
    else:
        raise AssertionError("an unsafe plan was applied")
    assert provider.writes == 0


def test_policies_sync_upsert_only_create_only():
    old = (make_record(f"old.{ZONE}", "A", 30, ["192.0.2.9"]), owner_record((f"old.{ZONE}", "A"), "me", 30),
           make_record(API[0], "A", 30, ["192.0.2.1"]), owner_record(API, "me", 30))
    outcomes = {}
    for policy in ("sync", "upsert-only", "create-only"):
        records = [{"name": "api", "type": "A"}, {"name": "new", "type": "A"}]
        upd, provider, _ = setup(records=records, held=old, policy=policy, max_change_fraction=1.0)
        result = run(upd.sync_once())
        outcomes[policy] = sorted(c.action for c in result.applied)
    assert outcomes == {"sync": ["create", "delete", "update"], "upsert-only": ["create", "update"],
                        "create-only": ["create"]}


def test_every_write_is_read_back_and_a_mismatch_is_an_error():
    upd, provider, _ = setup()
    provider.lose_writes = True
    result = run(upd.sync_once())
    assert result.result == "verify_error" and result.exit_code == 1
    assert f"api.{ZONE} A: server holds nothing, expected [api.{ZONE} 30 A 203.0.113.10" in result.message


def test_another_owners_names_are_never_touched():
    theirs = (make_record(API[0], "A", 30, ["192.0.2.1"]), owner_record(API, "someone-else", 30))
    upd, provider, _ = setup(held=theirs)
    result = run(upd.sync_once())
    assert result.result == "ok" and result.applied == () and provider.writes == 0
    assert [s.reason for s in result.plan.skipped] == ["owned by someone-else"]
