"""The RFC 2136 provider's contract, run against real BIND 9 and real Knot.

Every test uses its own names and owner id on the shared servers, and checks the result
by asking the server over DNS, not through the provider under test.
"""

from __future__ import annotations

import socket

import pytest

from router.dns.errors import ConflictError, ProviderError
from router.dns.providers import make_provider
from router.dns.model import Registry
from tests.dns.conftest import FakeRegistry, make_config, rfc2136_provider, stamp
from tests.dns.servers import ZONE, free_port
from tests.dns.support import answers, raw_update, run, sync_once, updater

EU = [stamp("eu-1", public=["203.0.113.10", "2001:db8::10"], weight=70),
      stamp("eu-2", public=["203.0.113.20"], weight=30),
      stamp("us-1", region="us", public=["198.51.100.10"])]


def _records(u):
    return [{"name": f"api-{u}", "type": "A", "region": "eu"},
            {"name": f"api-{u}", "type": "AAAA", "region": "eu"},
            {"name": f"_https._tcp.{u}", "type": "SRV", "region": "eu", "target": "{stamp}." + u, "port": 443}]


def test_creates_claims_and_serves_the_sets(rfc2136_server, uniq):
    cfg = make_config(rfc2136_provider(rfc2136_server), _records(uniq), owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(EU)))
    assert result.result == "ok", result.message
    assert [c.action for c in result.applied] == ["create", "create", "create"]
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}
    assert answers(rfc2136_server, f"api-{uniq}", "AAAA") == {"2001:db8::10"}
    assert answers(rfc2136_server, f"_https._tcp.{uniq}", "SRV") == {
        f"10 70 443 eu-1.{uniq}.{ZONE}", f"10 30 443 eu-2.{uniq}.{ZONE}"}
    assert answers(rfc2136_server, f"_stamp-owner-a.api-{uniq}", "TXT") == {
        f'"heritage=stamp-router,owner=own-{uniq}"'}
    # A second pass finds nothing to do.
    again = sync_once(updater(cfg, FakeRegistry(EU)))
    assert again.result == "ok" and again.plan.empty


def test_unhealthy_stamp_leaves_after_remove_after_reads_and_returns(rfc2136_server, uniq):
    cfg = make_config(rfc2136_provider(rfc2136_server), _records(uniq)[:1], owner_id=f"own-{uniq}",
                      remove_after=2)
    registry = FakeRegistry(EU)
    upd = updater(cfg, registry)
    assert sync_once(upd).result == "ok"
    registry.set_health("eu-2", False)
    assert sync_once(upd).result == "ok"
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}
    result = sync_once(upd)
    assert [c.action for c in result.applied] == ["update"]
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10"}
    registry.set_health("eu-2", True)
    assert sync_once(upd).result == "ok"
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}


def test_entry_removed_from_config_is_deleted_with_its_ownership(rfc2136_server, uniq):
    provider = rfc2136_provider(rfc2136_server)
    full = make_config(provider, _records(uniq), owner_id=f"own-{uniq}")
    assert sync_once(updater(full, FakeRegistry(EU))).result == "ok"

    upsert = make_config(provider, _records(uniq)[:1], owner_id=f"own-{uniq}", policy="upsert-only")
    kept = sync_once(updater(upsert, FakeRegistry(EU)))
    assert kept.plan.empty and {s.reason for s in kept.plan.skipped} == {"policy upsert-only does not delete"}
    assert answers(rfc2136_server, f"api-{uniq}", "AAAA") == {"2001:db8::10"}

    shrunk = make_config(provider, _records(uniq)[:1], owner_id=f"own-{uniq}")
    result = sync_once(updater(shrunk, FakeRegistry(EU)))
    assert sorted(c.action for c in result.applied) == ["delete", "delete"]
    assert answers(rfc2136_server, f"api-{uniq}", "AAAA") == set()
    assert answers(rfc2136_server, f"_https._tcp.{uniq}", "SRV") == set()
    assert answers(rfc2136_server, f"_stamp-owner-aaaa.api-{uniq}", "TXT") == set()
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}


def test_names_of_other_owners_and_unowned_names_are_never_touched(rfc2136_server, uniq):
    def foreign(msg):
        msg.add(f"manual-{uniq}", 60, "A", "192.0.2.99")
        msg.add(f"other-{uniq}", 60, "A", "192.0.2.98")
        msg.add(f"_stamp-owner-a.other-{uniq}", 60, "TXT", '"heritage=stamp-router,owner=someone-else"')

    raw_update(rfc2136_server, foreign)
    records = [{"name": f"manual-{uniq}", "type": "A", "region": "eu"},
               {"name": f"other-{uniq}", "type": "A", "region": "eu"}]
    cfg = make_config(rfc2136_provider(rfc2136_server), records, owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(EU)))
    assert result.result == "ok" and result.plan.empty
    assert sorted(s.reason for s in result.plan.skipped) == [
        "exists without an ownership record; not ours to change", "owned by someone-else"]
    assert answers(rfc2136_server, f"manual-{uniq}", "A") == {"192.0.2.99"}
    assert answers(rfc2136_server, f"other-{uniq}", "A") == {"192.0.2.98"}


def test_a_write_racing_another_writer_is_refused_then_replanned(rfc2136_server, uniq):
    cfg = make_config(rfc2136_provider(rfc2136_server), _records(uniq)[:1], owner_id=f"own-{uniq}")
    registry = FakeRegistry(EU)
    assert sync_once(updater(cfg, registry)).result == "ok"
    registry.set_health("eu-2", False)
    cfg1 = make_config(rfc2136_provider(rfc2136_server), _records(uniq)[:1], owner_id=f"own-{uniq}",
                       remove_after=1)
    upd = updater(cfg1, registry)
    real_apply = upd.provider._apply
    interfered = []

    async def apply_after_someone_else(changes):
        if not interfered:  # between our read and our write, another writer adds an address
            raw_update(rfc2136_server, lambda m: m.add(f"api-{uniq}", 30, "A", "192.0.2.77"))
            interfered.append(True)
        await real_apply(changes)

    upd.provider._apply = apply_after_someone_else
    result = sync_once(upd)
    assert interfered and result.result == "ok", result.message
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"203.0.113.10"}


def test_compare_and_set_refuses_a_stale_plan(rfc2136_server, uniq):
    cfg = make_config(rfc2136_provider(rfc2136_server), _records(uniq)[:1], owner_id=f"own-{uniq}")
    upd = updater(cfg, FakeRegistry(EU))

    async def stale():
        provider = upd.provider
        state = await provider.read()
        plan = upd.plan(Registry("x", tuple(EU), "t"), frozenset({"eu-1"}), state)
        raw_update(rfc2136_server, lambda m: m.add(f"api-{uniq}", 30, "A", "192.0.2.55"))
        try:
            await provider.apply(plan)
        finally:
            await provider.close()

    with pytest.raises(ConflictError, match=f"api-{uniq}.example.test. A changed since it was read"):
        run(stale())
    # The create was refused whole: no ownership record was written beside the stranger's A.
    assert answers(rfc2136_server, f"api-{uniq}", "A") == {"192.0.2.55"}
    assert answers(rfc2136_server, f"_stamp-owner-a.api-{uniq}", "TXT") == set()


def test_wrong_tsig_secret_is_a_clear_error_and_changes_nothing(rfc2136_server, uniq, tmp_path):
    bad = tmp_path / "bad.key"
    secret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    bad.write_text(f'key "updater-key" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n')
    provider = dict(rfc2136_provider(rfc2136_server), tsig_key_file=str(bad))
    cfg = make_config(provider, _records(uniq)[:1], owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(EU)))
    assert result.result == "provider_error"
    assert "rejected the signature of TSIG key updater-key (BADSIG)" in result.message
    assert secret not in result.message
    assert answers(rfc2136_server, f"api-{uniq}", "A") == set()


def test_unknown_tsig_key_name_is_a_clear_error(rfc2136_server, uniq, tmp_path):
    other = tmp_path / "other.key"
    other.write_text('key "nobody" {\n\talgorithm hmac-sha256;\n\tsecret "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";\n};\n')
    cfg = make_config(dict(rfc2136_provider(rfc2136_server), tsig_key_file=str(other)),
                      _records(uniq)[:1], owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(EU)))
    assert result.result == "provider_error"
    assert "the server does not know TSIG key nobody (BADKEY)" in result.message


def test_dead_server_and_missing_key_file_are_clear_errors(tmp_path, bind):
    dead = make_config({"kind": "rfc2136", "server": f"127.0.0.1:{free_port()}", "zone": ZONE,
                        "tsig_key_file": bind.key_file, "timeout": "2s"},
                       [{"name": "api", "type": "A"}])
    result = sync_once(updater(dead, FakeRegistry(EU)))
    assert result.result == "provider_error"
    assert "connection refused: is the server running on that port?" in result.message

    with socket.socket() as silent:      # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = make_config({"kind": "rfc2136", "server": f"127.0.0.1:{silent.getsockname()[1]}", "zone": ZONE,
                            "tsig_key_file": bind.key_file, "timeout": "0.3s"}, [{"name": "api", "type": "A"}])
        result = sync_once(updater(mute, FakeRegistry(EU)))
    assert result.result == "provider_error" and "(reading example.test.): no answer within 0.3s" in result.message

    missing = make_config(dict(rfc2136_provider(bind), tsig_key_file=str(tmp_path / "nope.key")),
                          [{"name": "api", "type": "A"}])
    with pytest.raises(ProviderError, match="cannot read TSIG key file .*nope.key: No such file"):
        run(make_provider(missing).read())


def test_a_write_the_server_ignores_is_caught_by_the_read_back(rfc2136_server, uniq):
    # RFC 2136 3.4.2.2: an A record added at a CNAME's name is silently ignored (NOERROR).
    raw_update(rfc2136_server, lambda m: m.add(f"alias-{uniq}", 60, "CNAME", f"target.{ZONE}"))
    cfg = make_config(rfc2136_provider(rfc2136_server), [{"name": f"alias-{uniq}", "type": "A", "region": "eu"}],
                      owner_id=f"own-{uniq}")
    result = sync_once(updater(cfg, FakeRegistry(EU)))
    assert result.result == "verify_error", result.message
    assert f"alias-{uniq}.example.test. A: server holds" in result.message


def test_dry_run_prints_the_plan_and_changes_nothing(rfc2136_server, uniq):
    cfg = make_config(rfc2136_provider(rfc2136_server), _records(uniq)[:1], owner_id=f"own-{uniq}")
    upd = updater(cfg, FakeRegistry(EU))
    result = sync_once(upd, dry_run=True)
    assert result.result == "dry_run"
    printed = upd.out.getvalue()
    assert f"+ create api-{uniq}.example.test. A" in printed
    assert f"+ api-{uniq}.example.test. 30 A 203.0.113.10" in printed
    assert answers(rfc2136_server, f"api-{uniq}", "A") == set()


def test_key_file_problems_are_clear_and_never_show_the_secret(tmp_path):
    secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
    two = tmp_path / "two.key"
    two.write_text("".join(f'key "k{i}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n' for i in (1, 2)))
    broken = tmp_path / "broken.key"
    broken.write_text(f'key "k" {{ algorithm hmac-sha256; secret {secret}\n')

    def error_for(path, **extra):
        cfg = make_config({"kind": "rfc2136", "server": "127.0.0.1:1", "zone": ZONE, "tsig_key_file": str(path),
                           **extra}, [{"name": "api", "type": "A"}])
        with pytest.raises(ProviderError) as info:
            run(make_provider(cfg).read())
        assert secret not in str(info.value)
        return str(info.value)

    assert error_for(two) == f"{two} holds 2 keys; set tsig_key_name"
    assert error_for(two, tsig_key_name="k3") == f"{two} has no key named k3"
    assert error_for(broken).startswith(f"{broken} is not a tsig-keygen key file")


def test_every_key_of_a_key_file_is_read(tmp_path, bind, uniq):
    # A BIND key file may hold several keys; the right one is picked by name.
    mixed = tmp_path / "mixed.key"
    mixed.write_text('# keys for the updater\nkey "other" {\n\talgorithm hmac-sha256;\n'
                     '\tsecret "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";\n};\n'
                     + open(bind.key_file).read())
    cfg = make_config(dict(rfc2136_provider(bind), tsig_key_file=str(mixed), tsig_key_name="updater-key"),
                      [{"name": f"multi-{uniq}", "type": "A", "region": "eu"}], owner_id=f"own-{uniq}")
    assert sync_once(updater(cfg, FakeRegistry(EU))).result == "ok"
    assert answers(bind, f"multi-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}
