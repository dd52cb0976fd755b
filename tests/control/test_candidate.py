"""Candidates: the bootstrap sections always come from the local file."""

import orjson
import pytest

from router.config import ConfigError
from router.control.candidate import Candidate, bootstrap_from, prepare, sniff_format
from router.jwt.keyfiles import resolve_path

LOCAL = b"""
[listen]
http = "127.0.0.1:8080"
[admin]
listen = "127.0.0.1:9901"
token_file = "admin.token"
[control]
url = "http://127.0.0.1:7000/config"
"""

REMOTE = {
    "admin": {"listen": "0.0.0.0:9901"},            # must not open the admin port to the world
    "control": {"url": "http://attacker.example/"},
    "routing": {"sources": ["header"]},
    "stamps": [{"name": "eu-1", "region": "eu", "backends": ["10.0.0.1:80"]}],
    "tenants": {"acme": "eu-1"},
}


def test_a_remote_document_cannot_change_the_bootstrap_sections(tmp_path):
    bootstrap = bootstrap_from(str(tmp_path / "router.toml"), LOCAL)
    valid, ignored = prepare(Candidate("url", "http://cp/", orjson.dumps(REMOTE), "json"), bootstrap, overlay=True)
    assert ignored == ["admin", "control"]
    cfg = valid.config
    assert (cfg.admin.listen, cfg.admin.token_file) == ("127.0.0.1:9901", "admin.token")
    assert cfg.control.url == "http://127.0.0.1:7000/config"
    assert dict(valid.pins) == {"acme": "eu-1"}


def test_relative_key_files_of_a_remote_document_are_the_local_config_files(tmp_path, monkeypatch):
    # Not the working directory: a router started from / must find the same key file.
    monkeypatch.chdir("/")
    bootstrap = bootstrap_from(str(tmp_path / "router.toml"), LOCAL)
    remote = {**REMOTE, "routing": {"sources": ["jwt"]},
              "jwt": {"algorithms": ["RS256"], "jwks_file": "keys/jwks.json"}}
    valid, _ = prepare(Candidate("url", "http://cp/", orjson.dumps(remote), "json"), bootstrap, overlay=True)
    assert resolve_path(valid, valid.config.jwt.jwks_file) == str(tmp_path / "keys" / "jwks.json")


def test_the_digest_is_the_documents_not_the_local_files(tmp_path):
    # Every router of a fleet serves the same control-plane version under the same digest.
    data = orjson.dumps(REMOTE)
    a = bootstrap_from(str(tmp_path / "a.toml"), LOCAL)
    b = bootstrap_from(str(tmp_path / "b.toml"), LOCAL.replace(b"8080", b"8081"))
    cand = Candidate("url", "http://cp/", data, "json")
    assert prepare(cand, a, overlay=True)[0].digest == prepare(cand, b, overlay=True)[0].digest


@pytest.mark.parametrize("text, path", [
    (b"[control]\nwatch_interval = 0", "control.watch_interval"),
    (b"[control]\ninterval = \"0s\"", "control.interval"),
    (b"[admin]\nlisten = \"nowhere\"", "admin.listen"),
    (b"[control]\nmax_drop_fraction = 2", "control.max_drop_fraction"),
])
def test_bad_bootstrap_sections_are_refused_with_their_path(tmp_path, text, path):
    with pytest.raises(ConfigError) as info:
        bootstrap_from(str(tmp_path / "router.toml"), text)
    assert [p for p, _ in info.value.errors] == [path]


@pytest.mark.parametrize("data, content_type, fmt", [
    (b'{"a": 1}', None, "json"),
    (b"a = 1", None, "toml"),
    (b"a = 1", "application/toml; charset=utf-8", "toml"),
    (b'{"a": 1}', "application/json", "json"),
    (b'  {"a": 1}', "text/plain", "json"),
])
def test_the_format_comes_from_content_type_then_the_first_byte(data, content_type, fmt):
    assert sniff_format(data, content_type) == fmt


def big_remote(tenants: dict, *, first: bool = False, tail: dict | None = None) -> bytes:
    tail = tail or {}
    doc = {k: v for k, v in REMOTE.items() if k != "tenants" and k not in tail}
    doc = {"tenants": tenants, **doc} if first else {**doc, "tenants": tenants}
    return orjson.dumps({**doc, **tail}, option=orjson.OPT_INDENT_2)     # tail: after the table


BIG = {f"tenant-{i:06d}": "eu-1" for i in range(60_000)}        # over 1 MiB of JSON
# Past MAX_TAIL of members after the table: not looked for, the document is parsed whole.
LONG_TAIL = {"stamps": [{"name": "eu-1", "region": "eu",
                         "backends": [f"10.0.{i // 250}.{i % 250 + 1}:80" for i in range(5000)]}]}


@pytest.mark.parametrize("layout, sliced", [
    ({}, True),                                   # "tenants" last
    ({"first": True}, True),                      # first, the rest after it (sorted keys)
    ({"tail": LONG_TAIL}, False),
])
def test_a_large_remote_document_gives_the_same_config_sliced_or_whole(tmp_path, layout, sliced):
    # Sliced, the table is also kept as text for the last known good. Either way the
    # same config.
    bootstrap = bootstrap_from(str(tmp_path / "router.toml"), LOCAL)
    data = big_remote(BIG, **layout)
    valid, _ = prepare(Candidate("url", "http://cp/", data, "json"), bootstrap, overlay=True)
    whole, _ = prepare(Candidate("url", "http://cp/", data, "json"), bootstrap, overlay=True, slice_inline=False)
    assert dict(valid.pins) == BIG and valid.digest == whole.digest and valid.config == whole.config
    assert (valid.pins_json is not None) == sliced
    if sliced:
        assert orjson.loads(valid.pins_json) == BIG and "tenants" not in valid.document


def test_errors_in_a_large_remote_table_are_worded_as_for_a_whole_parse(tmp_path):
    bootstrap = bootstrap_from(str(tmp_path / "router.toml"), LOCAL)
    bad_pin = big_remote({**BIG, "tenant-000123": "us-9"})
    broken = bad_pin.replace(b'"tenant-030000": "eu-1"', b'"tenant-030000": eu-1')   # a syntax error inside
    # Past the cap on pin errors, then a syntax error: still only the syntax error.
    all_bad = big_remote(dict.fromkeys(BIG, "us-9")).replace(b'"tenant-059000": "us-9"', b'"tenant-059000": us-9')
    assert broken != bad_pin and b"us-9," in all_bad
    for data in (bad_pin, all_bad, broken):
        errors = []
        for slice_inline in (True, False):
            with pytest.raises(ConfigError) as exc:
                prepare(Candidate("url", "http://cp/", data, "json"), bootstrap, overlay=True,
                        slice_inline=slice_inline)
            errors.append(exc.value.errors)
        assert errors[0] == errors[1]
    assert errors[0][0][0] == ""            # the syntax error: the document's, not the table's
