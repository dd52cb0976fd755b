"""The PowerDNS provider against a real pdns_server (gsqlite3, HTTP API, LUA records)."""

from __future__ import annotations

import collections

import dns.message
import dns.query

from tests.dns.conftest import FakeRegistry, make_config, stamp
from tests.dns.servers import ZONE, free_port
from tests.dns.support import answers, sync_once, updater

STAMPS = [stamp("eu-1", public=["203.0.113.10"], weight=70),
          stamp("eu-2", public=["203.0.113.20"], weight=30)]


def pdns_provider(server, **over) -> dict:
    return {"kind": "powerdns", "api_url": server.extra["api_url"], "api_key_file": server.key_file,
            "zone": ZONE, "server": server.address, "timeout": "3s", **over}


def test_weights_are_served_by_a_lua_pickwrandom_record(powerdns, uniq):
    cfg = make_config(pdns_provider(powerdns), [{"name": f"w-{uniq}", "type": "A"}], owner_id=f"own-{uniq}", ttl=5)
    result = sync_once(updater(cfg, FakeRegistry(STAMPS)))
    assert result.result == "ok", result.message
    (change,) = result.applied
    by_type = {r.type: r for r in change.new}
    assert set(by_type) == {"LUA", "TXT"}
    assert by_type["LUA"].values == ("A \"pickwrandom({{70,'203.0.113.10'},{30,'203.0.113.20'}})\"",)

    counts = collections.Counter()
    query = dns.message.make_query(f"w-{uniq}.{ZONE}", "A")
    for _ in range(400):
        response = dns.query.udp(query, "127.0.0.1", port=powerdns.port, timeout=3)
        for rrset in response.answer:
            counts.update(rd.address for rd in rrset)
    assert sum(counts.values()) == 400
    share = counts["203.0.113.10"] / 400
    assert 0.60 <= share <= 0.80, counts


def test_updates_and_deletes_through_the_api_with_ownership(powerdns, uniq):
    records = [{"name": f"api-{uniq}", "type": "A"},
               {"name": f"_https._tcp.{uniq}", "type": "SRV", "target": "{stamp}." + uniq, "port": 443}]
    cfg = make_config(pdns_provider(powerdns), records, owner_id=f"own-{uniq}", remove_after=1)
    registry = FakeRegistry(STAMPS)
    assert sync_once(updater(cfg, registry)).result == "ok"
    assert answers(powerdns, f"_https._tcp.{uniq}", "SRV") == {
        f"10 70 443 eu-1.{uniq}.{ZONE}", f"10 30 443 eu-2.{uniq}.{ZONE}"}
    assert answers(powerdns, f"_stamp-owner-a.api-{uniq}", "TXT") == {f'"heritage=stamp-router,owner=own-{uniq}"'}

    registry.set_health("eu-1", False)
    upd = updater(cfg, registry)
    result = sync_once(upd)
    assert [c.action for c in result.applied] == ["update", "update"]
    assert answers(powerdns, f"api-{uniq}", "A") == {"203.0.113.20"}

    smaller = make_config(pdns_provider(powerdns), records[:1], owner_id=f"own-{uniq}")
    result = sync_once(updater(smaller, registry))
    assert [c.action for c in result.applied] == ["delete"]
    assert answers(powerdns, f"_https._tcp.{uniq}", "SRV") == set()


def test_a_lua_record_that_does_not_evaluate_is_caught_by_querying_it(powerdns, uniq, monkeypatch):
    from router.dns.providers import powerdns as pdns_module
    monkeypatch.setattr(pdns_module, "lua_pickwrandom", lambda rtype, pairs: f'{rtype} "pickwrandom(("')
    cfg = make_config(pdns_provider(powerdns), [{"name": f"bad-{uniq}", "type": "A"}], owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(STAMPS)))
    assert result.result == "verify_error"
    assert f"bad-{uniq}.{ZONE} A answers SERVFAIL" in result.message


def test_a_wrong_api_key_and_a_dead_api_are_clear_errors(powerdns, tmp_path, uniq):
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key\n")
    cfg = make_config(pdns_provider(powerdns, api_key_file=str(wrong)), [{"name": f"x-{uniq}", "type": "A"}])
    result = sync_once(updater(cfg, FakeRegistry(STAMPS)))
    assert result.result == "provider_error"
    assert f"the API rejected the key from {wrong} (HTTP 401)" in result.message
    assert "not-the-key" not in result.message

    dead = make_config(pdns_provider(powerdns, api_url=f"http://127.0.0.1:{free_port()}"),
                       [{"name": f"x-{uniq}", "type": "A"}])
    result = sync_once(updater(dead, FakeRegistry(STAMPS)))
    assert result.result == "provider_error" and "cannot reach the API" in result.message


def test_a_zone_the_server_lacks_is_a_clear_error(powerdns):
    cfg = make_config(dict(pdns_provider(powerdns), zone="missing.test."), [{"name": "api", "type": "A"}])
    result = sync_once(updater(cfg, FakeRegistry(STAMPS)))
    assert result.result == "provider_error"
    assert "no zone missing.test. on server localhost (HTTP 404)" in result.message
