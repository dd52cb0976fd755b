"""Pushed pins on top of a large shared base read exactly like a copied dict (router.core.pin_table)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.core import pin_table
from router.core.pin_table import PinTable, with_changes

TENANTS = [f"t{i}" for i in range(12)]
edit_lists = st.lists(st.dictionaries(st.sampled_from(TENANTS + ["new-1", "new-2"]),
                                      st.one_of(st.none(), st.sampled_from(["eu-1", "eu-2"])), max_size=3),
                      max_size=30)


def same(table, expected: dict) -> None:
    assert dict(table.items()) == expected and len(table) == len(expected)
    assert sorted(table) == sorted(expected)
    for key in TENANTS + ["new-1", "new-2", "nobody"]:
        assert (key in table) == (key in expected)
        assert table.get(key) == expected.get(key)
        assert table.get(key, "-") == expected.get(key, "-")


@settings(max_examples=300, deadline=None)
@given(edits=edit_lists, compact_at=st.integers(min_value=1, max_value=8))
def test_any_run_of_pushes_reads_like_the_dict_it_stands_for(edits, compact_at):
    base = {t: "eu-1" if i % 2 else "eu-2" for i, t in enumerate(TENANTS)}
    snapshot = dict(base)
    expected, table = dict(base), base
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pin_table, "LAYER_MIN", 1)             # layer even this small table
        mp.setattr(pin_table, "COMPACT_EDITS", compact_at)
        for changes in edits:
            before, before_contents = table, dict(table.items())
            table = with_changes(table, changes)
            for key, value in changes.items():
                if value is None:
                    expected.pop(key, None)
                else:
                    expected[key] = value
            same(table, expected)
            assert dict(before.items()) == before_contents        # the table a request holds never changes
            assert not isinstance(table, PinTable) or len(table.edits) <= compact_at
    assert base == snapshot                                        # nor the shared base


def test_a_push_on_a_large_table_shares_its_base_and_a_small_one_is_copied():
    large = {f"t{i}": "eu-1" for i in range(pin_table.LAYER_MIN)}
    pushed = with_changes(large, {"t1": "eu-2", "zeta": "eu-1"})
    assert isinstance(pushed, PinTable) and pushed.base is large and len(pushed) == len(large) + 1
    again = with_changes(pushed, {"t1": None})
    assert again.base is large and "t1" not in again and pushed["t1"] == "eu-2"
    small = {"a": "eu-1"}
    assert with_changes(small, {"b": "eu-2"}) == {"a": "eu-1", "b": "eu-2"} and small == {"a": "eu-1"}


def test_past_the_limit_the_edits_are_folded_into_a_plain_dict(monkeypatch):
    monkeypatch.setattr(pin_table, "COMPACT_EDITS", 2)
    large = {f"t{i}": "eu-1" for i in range(pin_table.LAYER_MIN)}
    table = large
    for i in range(2):                                    # 3 edits in all: past the limit
        table = with_changes(table, {f"new-{i}": "eu-2", "t0": None})
    assert type(table) is dict and table is not large and len(table) == len(large) + 1
    assert "t0" not in table and table["new-1"] == "eu-2" and "t0" in large
