"""Which config the router starts from (router.control.startup), with files on disk and
no router process. The control plane is an unreachable loopback port."""

import asyncio

import pytest

from router.config import ConfigError
from router.control.lkg import LkgStore, lkg_meta
from router.control.pins import apply_op, pin_op
from router.control.startup import choose_start
from tests.support.router_proc import stamp, to_toml
from tests.support.servers import free_port

STAMPS = [stamp("eu-1", ["10.0.0.1:80"]), stamp("eu-2", ["10.0.0.2:80"])]


def write(tmp_path, **doc) -> str:
    doc = {"control": {"state_dir": str(tmp_path / "state"), **doc.pop("control", {})},
           "routing": {"sources": ["header"]}, **doc}
    path = tmp_path / "router.toml"
    path.write_text(to_toml(doc))
    return str(path)


def start(path):
    return asyncio.run(choose_start(path))


def test_a_valid_file_and_no_lkg_starts_from_the_file_and_saves_it(tmp_path):
    s = start(write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-1"}))
    assert (s.persist, s.origin.lkg, s.last.outcome, dict(s.valid.pins)) == (True, False, "applied", {"acme": "eu-1"})


def save_lkg(path, pushes=()):
    """Start once from `path` and store what it served, with `pushes` journaled on top."""
    s = start(path)
    store = LkgStore(s.store.dir)
    store.save(lkg_meta(s.valid, s.valid.digest, s.valid.version, 0), s.valid.document, s.valid.pins, s.valid.modes)
    valid = s.valid
    for n, op in enumerate(pushes, 1):
        valid = apply_op(valid, op, base_version=s.valid.version, edits=n)
        store.append(op)
    return valid


def test_an_invalid_file_starts_from_the_lkg_and_says_so(tmp_path):
    saved = save_lkg(write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-1"}))
    s = start(write(tmp_path, stamps=[{"name": "eu-1", "region": "eu"}]))
    assert (s.origin.lkg, s.persist, s.valid.digest) == (True, False, saved.digest)
    assert s.last.outcome == "invalid" and s.last.errors[0][0] == "stamps[0].backends"
    assert "starting from the last known good" in s.warnings[-1]


def test_an_unchanged_file_keeps_the_pushes_made_since(tmp_path):
    path = write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-1"})
    pushed = save_lkg(path, [pin_op("acme", "eu-2"), pin_op("newco", "eu-1")])
    s = start(path)
    assert (s.origin.lkg, s.valid.digest, s.valid.version) == (False, pushed.digest, pushed.version)
    assert dict(s.valid.pins) == {"acme": "eu-2", "newco": "eu-1"}


def test_a_changed_file_replaces_the_pushes(tmp_path):
    save_lkg(write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-1"}), [pin_op("newco", "eu-1")])
    s = start(write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-2"}))
    assert (s.persist, dict(s.valid.pins)) == (True, {"acme": "eu-2"})


def test_a_file_dropping_every_pin_of_the_lkg_is_refused_at_start_too(tmp_path):
    saved = save_lkg(write(tmp_path, stamps=STAMPS, tenants={"a": "eu-1", "b": "eu-2", "c": "eu-2"}))
    s = start(write(tmp_path, stamps=STAMPS))
    assert (s.origin.lkg, s.valid.digest, s.last.outcome) == (True, saved.digest, "unsafe")
    assert s.last.plan.pins_dropped == 3


def test_control_plane_down_no_lkg_but_a_full_file_starts_from_the_file(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/config"
    s = start(write(tmp_path, control={"url": url}, stamps=STAMPS))
    assert (s.valid.source, s.persist, s.last.outcome) == (str(tmp_path / "router.toml"), True, "invalid")
    assert "local file" in s.warnings[-1]


def test_control_plane_down_and_nothing_else_exits_with_the_reason(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/config"
    with pytest.raises(ConfigError) as info:
        start(write(tmp_path, control={"url": url}))
    assert info.value.errors[0][0] == "control.url" and "cannot fetch" in info.value.errors[0][1]


def test_a_damaged_lkg_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "lkg.json").write_text("{")
    s = start(write(tmp_path, stamps=STAMPS))
    assert s.last.outcome == "applied" and "cannot be used" in s.warnings[0]
