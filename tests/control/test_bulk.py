"""Slicing a large JSON object gives exactly what one parse gives, or one parse's error."""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.control.bulk import (INLINE_SLICE_MIN, count_missing, drain, iter_object_slices, iter_slices,
                                 split_inline_tenants)


def sliced(data: bytes, size: int = 16) -> dict:
    out: dict = {}
    for part in iter_object_slices(data, size):
        assert isinstance(part, dict)
        out.update(part)
    return out


pins = st.dictionaries(
    st.text(min_size=0, max_size=12),
    st.one_of(st.text(max_size=8),
              st.fixed_dictionaries({"stamp": st.text(max_size=8)}, optional={"mode": st.sampled_from(["read-only", "read-write"])}),
              st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=3)),
    max_size=40)


@settings(max_examples=300, deadline=None)
@given(table=pins, size=st.integers(min_value=1, max_value=64), indent=st.sampled_from([None, 1, 2]))
def test_slices_union_is_the_whole_parse(table, size, indent):
    # Text full of quotes, commas and braces inside strings; nested objects; any layout.
    data = json.dumps(table, indent=indent, ensure_ascii=False).encode()
    assert sliced(data, size) == orjson.loads(data)


@pytest.mark.parametrize("text", [
    '{"a": "x", "b": "y",}',           # trailing comma
    '\f{"a": "x", "b": "y"}',          # form feed is whitespace to Python, not to JSON
    '{"a": "x", "b": "y"}\v',
    '{"a": "x" "b": "y"}',             # missing comma
    '{"a": "x", "b": }',
    '{"a": "x", "b": "y"} trailing',
    '{"a": "x", "b": "y"',
])
def test_a_syntax_error_comes_out_as_orjson_words_it(text):
    data = text.encode()
    with pytest.raises(orjson.JSONDecodeError) as whole:
        orjson.loads(data)
    with pytest.raises(orjson.JSONDecodeError) as parts:
        list(iter_object_slices(data, 4))
    assert str(parts.value) == str(whole.value)


@pytest.mark.parametrize("text", ['["a", "b"]', '"eu-1"', "5", " { } ", "{}"])
def test_anything_but_a_plain_object_is_parsed_whole(text):
    assert list(iter_object_slices(text.encode(), 1)) == [orjson.loads(text)]


@pytest.mark.parametrize("pad", [b"", b"\n", b" \r\n\t" * 2000])
def test_a_large_table_comes_in_many_slices(pad):
    table = {f"tenant-{i}": f"eu-{i % 3}" for i in range(20000)}
    parts = list(iter_object_slices(pad + orjson.dumps(table) + pad))
    assert len(parts) > 5 or len(pad) > 4096      # over 4 KiB of trailing space: parsed whole
    assert {k: v for p in parts for k, v in p.items()} == table


@pytest.mark.parametrize("as_proxy", [False, True])
def test_count_missing_counts_keys_that_are_gone(as_proxy):
    from types import MappingProxyType
    before = {f"t{i}": "s" for i in range(10000)}
    after = {f"t{i}": "s" for i in range(2500, 12000)}
    wrap = MappingProxyType if as_proxy else (lambda d: d)
    assert count_missing(before, wrap(after)) == (2500, True)
    assert count_missing(before, before) == (0, True)
    assert count_missing({}, wrap(after)) == (0, True)


def test_count_missing_stops_once_enough_keys_stay():
    before = {f"t{i}": "s" for i in range(100000)}
    dropped, exact = count_missing(before, dict(before), enough_kept=50000)
    assert not exact and dropped <= 50000
    assert count_missing(before, dict(before), enough_kept=100000) == (0, True)


def test_drain_and_iter_slices():
    table = {f"t{i}": i for i in range(10000)}
    assert sum(len(s) for s in iter_slices(table, 777)) == 10000
    drain(table)
    assert table == {}


def test_cuts_that_keep_falling_inside_a_member_end_in_one_parse_of_the_rest():
    nested = {f"k{i}": f"v{i}" for i in range(40)}          # 40 cut candidates inside one member
    table = {"a": "eu-1", "b": "eu-2", "deep": nested, "z": "eu-1"}
    data = orjson.dumps(table)
    assert sliced(data, 8) == table


def test_a_syntax_error_after_good_slices_is_worded_for_the_whole_text():
    data = orjson.dumps({f"t{i}": "eu-1" for i in range(200)})[:-1] + b',"x": }'
    with pytest.raises(orjson.JSONDecodeError) as whole:
        orjson.loads(data)
    with pytest.raises(orjson.JSONDecodeError) as parts:
        list(iter_object_slices(data, 64))
    assert str(parts.value) == str(whole.value)


# -- a large document's own [tenants] table ---------------------------------------------

def whole_via_split(data: bytes, size: int = 16):
    """What prepare() makes of `data` through split_inline_tenants and slices; None when
    the split does not apply or the slices do not parse (prepare then parses whole)."""
    split = split_inline_tenants(data, min_size=0)
    if split is None:
        return None
    head, text = split
    try:
        return {**head, "tenants": sliced(text, size)}
    except orjson.JSONDecodeError:
        return None


members = st.lists(st.tuples(st.sampled_from(["version", "tenants", "note", "geo", "x"]),
                             st.one_of(pins, st.text(alphabet='"tenants:{}\\ ,', max_size=20), st.integers())),
                   max_size=5)


@settings(max_examples=500, deadline=None)
@given(before=members, after=members, tenants=pins, indent=st.sampled_from([None, 2]),
       size=st.integers(min_value=1, max_value=64))
def test_a_split_document_is_exactly_the_whole_parse(before, after, tenants, indent, size):
    # Any members in any order around the table, strings that look like a "tenants" key,
    # repeated keys (written by hand: a dict could not hold them).
    body = [json.dumps(k) + ":" + json.dumps(v, indent=indent) for k, v in before]
    body.append('"tenants":' + json.dumps(tenants, indent=indent))
    body += [json.dumps(k) + ":" + json.dumps(v, indent=indent) for k, v in after]
    data = ("{" + ",\n ".join(body) + "}").encode()
    got = whole_via_split(data, size)
    assert got is None or got == orjson.loads(data)
    if not any(k == "tenants" for k, _ in before + after):     # one table: always split
        assert got == orjson.loads(data)


def test_a_small_document_is_parsed_whole():
    assert split_inline_tenants(orjson.dumps({"tenants": {"a": "eu-1"}}), min_size=100) is None


@pytest.mark.parametrize("data", [
    b'{"note": "\\"tenants\\": {", "x": {"a": 1}}',                              # only in a string
    b'{"x": {"tenants": {"a": "eu-1"}}, "y": 1}',                                 # not at the top
    b'{"tenants": "eu-1"}',                                                       # not a table
    b'[{"tenants": {"a": "eu-1"}}]',                                              # not an object
])
def test_documents_laid_out_otherwise_are_parsed_whole(data):
    assert split_inline_tenants(data, min_size=0) is None


@pytest.mark.parametrize("data, rest", [
    (b'{"stamps": [], "tenants": {"a": "eu-1"}}', {"stamps": []}),
    (b'{"tenants": {"a": {"stamp": "eu-1"}, "b": "eu-2"}, "version": "v1", "geo": {"r": {"x": 1}}}',
     {"version": "v1", "geo": {"r": {"x": 1}}}),                                   # sorted keys put these after
    (b'{"tenants": {}, "x": 1, "tenants": {"a": "eu-1"}}', {"x": 1}),             # the last one wins
    (b'{"tenants": {"a": "eu-1"}, "version": "v1", "tenants": {}}', {"version": "v1"}),
])
def test_the_members_around_the_table_are_the_rest(data, rest):
    head, text = split_inline_tenants(data, min_size=0)
    assert head == rest and {**head, "tenants": orjson.loads(text)} == orjson.loads(data)


def test_a_large_document_splits_at_its_tenants_table():
    tenants = {f"tenant-{i:06d}": "eu-1" for i in range(60_000)}
    data = orjson.dumps({"version": "v1", "stamps": [{"name": "eu-1"}], "tenants": tenants},
                        option=orjson.OPT_INDENT_2)
    head, text = split_inline_tenants(data)
    assert len(data) > INLINE_SLICE_MIN
    assert head == {"version": "v1", "stamps": [{"name": "eu-1"}]}
    assert text == orjson.dumps(tenants, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")
