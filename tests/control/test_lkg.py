"""The last known good: atomic save, journal of pin pushes, rebuilt at start exactly as served."""

import os

import orjson
import pytest

from router.config import ConfigError, load_bytes
from router.control.bulk import SLICE_BYTES
from router.control.candidate import Candidate, bootstrap_from, prepare
from router.control.lkg import LkgStore, StateDirInUse, lkg_meta
from router.control.pins import MAX_BATCH_ERRORS, apply_op, batch_op, check_op, is_noop, pin_op
from router.control.reloader import Origin
from router.control.startup import from_record
from router.core.pin_table import with_changes
from tests.control.support import ROUTING

CONFIG = b'version = "v7"\n' + ROUTING + b"""
[tenants]
acme = "eu-1"
globex = { stamp = "eu-2", mode = "read-only" }
"""


@pytest.fixture
def valid(tmp_path):
    path = tmp_path / "router.toml"
    path.write_bytes(CONFIG)
    return load_bytes(CONFIG, fmt="toml", source=str(path), base_dir=str(tmp_path))


@pytest.fixture
def bootstrap(tmp_path):
    return bootstrap_from(str(tmp_path / "router.toml"), CONFIG)


def meta(valid, origin: Origin) -> dict:
    return lkg_meta(valid, origin.digest, origin.version, origin.edits)


def test_save_then_load_gives_the_same_config(tmp_path, valid, bootstrap):
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, valid.pins, valid.modes)
    assert sorted(os.listdir(store.dir)) == ["lkg.json"]          # no temporary file left
    rebuilt, origin = from_record(LkgStore(store.dir).load(), bootstrap)
    assert (rebuilt.digest, rebuilt.version, rebuilt.source) == (valid.digest, "v7", valid.source)
    assert dict(rebuilt.pins) == dict(valid.pins) and dict(rebuilt.modes) == {"globex": "read-only"}
    assert (origin.digest, origin.edits, origin.lkg) == (valid.digest, 0, False)
    assert "tenants" not in rebuilt.document      # the pins are kept once, in .pins


def test_journaled_pushes_replay_to_the_digest_and_version_served(tmp_path, valid, bootstrap):
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, valid.pins, valid.modes)
    served = valid
    ops = [pin_op("acme", "eu-2"), pin_op("new-1", "eu-1", "read-only"), pin_op("globex", None),
           batch_op({"new-2": {"stamp": "eu-2", "mode": "read-write"}, "acme": None, "nobody": None})]
    for n, op in enumerate(ops, 1):
        served = apply_op(served, op, base_version="v7", edits=n)
        store.append(op)
    assert served.version == "v7+4"
    rebuilt, origin = from_record(LkgStore(store.dir).load(), bootstrap)
    assert (rebuilt.digest, rebuilt.version) == (served.digest, served.version)
    assert dict(rebuilt.pins) == {"new-1": "eu-1", "new-2": "eu-2"}
    assert dict(rebuilt.modes) == {"new-1": "read-only"}
    assert (origin.digest, origin.edits) == (valid.digest, 4)


def test_a_torn_last_journal_line_is_ignored(tmp_path, valid, bootstrap):
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, valid.pins, valid.modes)
    store.append(pin_op("acme", "eu-2"))
    with open(store.journal_path(valid.digest), "ab") as fh:
        fh.write(b'{"op":"put","tenant":"glob')
    rebuilt, origin = from_record(LkgStore(store.dir).load(), bootstrap)
    assert rebuilt.pins["acme"] == "eu-2" and origin.edits == 1


def test_a_new_save_starts_a_new_journal(tmp_path, valid):
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, valid.pins, valid.modes)
    store.append(pin_op("acme", "eu-2"))
    pushed = apply_op(valid, pin_op("acme", "eu-2"), base_version="v7", edits=1)
    store.save(meta(pushed, Origin(valid.digest, valid.version, edits=1)), pushed.document, pushed.pins, pushed.modes)
    record = LkgStore(store.dir).load()
    assert record.ops == [] and record.meta["edits"] == 1
    assert [n for n in os.listdir(store.dir) if n.endswith(".journal")] == []


def test_a_damaged_lkg_is_reported_not_used(tmp_path):
    store = LkgStore(str(tmp_path))
    (tmp_path / "lkg.json").write_bytes(b'{"meta": {"format": 1')
    with pytest.raises(ValueError, match="damaged"):
        store.load()
    assert LkgStore(str(tmp_path / "none")).load() is None


def test_a_held_state_dir_is_refused_until_released(tmp_path):
    first, second = LkgStore(str(tmp_path / "state")), LkgStore(str(tmp_path / "state"))
    assert first.hold() is None
    with pytest.raises(StateDirInUse) as refused:
        second.hold()
    assert refused.value.holder_pid == str(os.getpid())
    first.release()
    assert second.hold() is None
    second.release()


def test_a_state_dir_that_cannot_be_made_is_a_warning_not_a_refusal(tmp_path):
    (tmp_path / "file").write_text("")
    warning = LkgStore(str(tmp_path / "file" / "state")).hold()
    assert warning == (f"control.state_dir {tmp_path / 'file' / 'state'} is not a directory (a file, or a path "
                       "through one, is in the way): the last known good config is not kept")


def test_large_tables_are_written_in_slices_and_read_back(tmp_path, valid, bootstrap):
    pins = {f"tenant-{i}": "eu-1" if i % 2 else "eu-2" for i in range(50000)}
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, pins, {})
    raw = orjson.loads((tmp_path / "state" / "lkg.json").read_bytes())
    assert raw["pins"] == pins
    # Pins pushed on top of the shared table are written with it.
    layered = with_changes(with_changes(pins, {"tenant-1": "eu-2", "newco": "eu-1"}), {"tenant-2": None})
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, layered, {})
    expected = {**pins, "tenant-1": "eu-2", "newco": "eu-1"}
    del expected["tenant-2"]
    assert orjson.loads((tmp_path / "state" / "lkg.json").read_bytes())["pins"] == expected


@pytest.mark.parametrize("op, path", [
    (pin_op("bad tenant", "eu-1"), "tenants['bad tenant']"),
    (pin_op("acme", "us-9"), "tenants.acme.stamp"),
    (pin_op("acme", "eu-1", "write-only"), "tenants.acme.mode"),
])
def test_a_bad_pin_edit_names_its_path(valid, op, path):
    with pytest.raises(ConfigError) as info:
        check_op(valid, op)
    assert [p for p, _ in info.value.errors] == [path]


def test_a_batch_names_every_bad_pin_up_to_a_cap(valid):
    with pytest.raises(ConfigError) as info:
        check_op(valid, batch_op({"ok": None, "bad tenant": None, "acme": {"stamp": "us-9", "mode": "read-write"},
                                  "globex": 7}))
    assert [p for p, _ in info.value.errors] == ["tenants['bad tenant']", "tenants.acme.stamp", "tenants.globex"]
    with pytest.raises(ConfigError) as info:
        check_op(valid, batch_op({f"t{i}": {"stamp": "us-9", "mode": "read-write"} for i in range(MAX_BATCH_ERRORS + 5)}))
    assert len(info.value.errors) == MAX_BATCH_ERRORS + 1 and "5 more errors" in info.value.errors[-1][1]


def test_noop_edits_are_recognised(valid):
    assert is_noop(valid, pin_op("acme", "eu-1"))
    assert is_noop(valid, pin_op("globex", "eu-2", "read-only"))
    assert not is_noop(valid, pin_op("globex", "eu-2"))
    assert is_noop(valid, pin_op("nobody", None))
    assert is_noop(valid, batch_op({"acme": {"stamp": "eu-1", "mode": "read-write"}, "nobody": None}))
    assert not is_noop(valid, batch_op({"acme": {"stamp": "eu-1", "mode": "read-write"}, "globex": None}))


FILE_CONFIG = b'version = "v8"\ntenants_file = "tenants.json"\n' + ROUTING


def file_config(tmp_path, tenants: bytes, extra: bytes = b""):
    (tmp_path / "tenants.json").write_bytes(tenants)
    data = FILE_CONFIG + extra
    (tmp_path / "router.toml").write_bytes(data)
    return load_bytes(data, fmt="toml", source=str(tmp_path / "router.toml"), base_dir=str(tmp_path))


def test_a_tenants_file_of_plain_pins_is_saved_as_its_own_text(tmp_path):
    # Spacing, order and a repeated key (the last one wins, in the file as in lkg.json).
    text = b'{ "acme" : "eu-2",\n  "zeta": "eu-1", "acme": "eu-1" }\n'
    valid = file_config(tmp_path, text)
    assert valid.pins_json == text and dict(valid.pins) == {"acme": "eu-1", "zeta": "eu-1"}
    store = LkgStore(str(tmp_path / "state"))
    store.save(meta(valid, Origin(valid.digest, valid.version)), valid.document, valid.pins, valid.modes,
               pins_json=valid.pins_json)
    assert b'"pins":' + text + b',"modes":{}' in (tmp_path / "state" / "lkg.json").read_bytes()
    rebuilt, _ = from_record(LkgStore(store.dir).load(), bootstrap_from(str(tmp_path / "router.toml"),
                                                                         FILE_CONFIG))
    assert (dict(rebuilt.pins), rebuilt.digest) == (dict(valid.pins), valid.digest)


def test_a_large_tenants_file_read_in_slices_keeps_its_text(tmp_path):
    text = orjson.dumps({f"tenant-{i}": "eu-1" if i % 2 else "eu-2" for i in range(20000)})
    (tmp_path / "tenants.json").write_bytes(text)
    (tmp_path / "router.toml").write_bytes(FILE_CONFIG)
    boot = bootstrap_from(str(tmp_path / "router.toml"), FILE_CONFIG)
    valid, _ = prepare(Candidate("file", boot.path, FILE_CONFIG, "toml"), boot, overlay=False)
    assert len(text) > 4 * SLICE_BYTES and valid.pins_json == text and len(valid.pins) == 20000


@pytest.mark.parametrize("tenants, extra", [
    (b'{"acme": "eu-1", "globex": {"stamp": "eu-2", "mode": "read-only"}}', b""),   # a mode
    (b'{"acme": "eu-1", "globex": {"stamp": "eu-2"}}', b""),                         # an object form pin
    (b'{"acme": "eu-1"}', b'[tenants]\nzeta = "eu-2"\n'),                            # another table
])
def test_pins_that_are_not_the_file_text_as_parsed_are_serialized(tmp_path, tenants, extra):
    assert file_config(tmp_path, tenants, extra).pins_json is None


def test_a_pin_edit_stops_the_text_from_standing_for_the_pins(tmp_path):
    valid = file_config(tmp_path, b'{"acme": "eu-1"}')
    edited = apply_op(valid, pin_op("zeta", "eu-2"), base_version="v8", edits=1)
    assert valid.pins_json is not None and edited.pins_json is None
