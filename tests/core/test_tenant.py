"""What a tenant id is, one at a time and in bulk."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.core.tenant import MAX_TENANT_LEN, all_valid_tenants, is_valid_tenant


@pytest.mark.parametrize("tenant", ["a", "acme", "ACME", "acme-corp", "acme_corp", "acme.corp",
                                    "0", "123", "-", "...", "x" * MAX_TENANT_LEN])
def test_valid_tenant_ids(tenant):
    assert is_valid_tenant(tenant)


@pytest.mark.parametrize("tenant", ["", "x" * (MAX_TENANT_LEN + 1), "acme corp", "acme/corp",
                                    "acme:1", "acme\n", "\nacme", "acme\t", "ümlaut", "acme%20",
                                    "a@b", "a+b", "a~b"])
def test_invalid_tenant_ids(tenant):
    assert not is_valid_tenant(tenant)


@pytest.mark.parametrize("ids", [[""], ["a", ""], ["", "a"], ["a", "", "b"], ["a\nb"],
                                 ["a\n"], ["x" * 129], ["ok", "not ok"], ["é"]])
def test_bulk_check_finds_each_kind_of_bad_id(ids):
    assert not all_valid_tenants(ids)


def test_bulk_check_of_nothing_is_true():
    assert all_valid_tenants([])


# Ids drawn near the alphabet's edges: the allowed characters, separators, non-ASCII.
_near_alphabet = st.text(alphabet=st.sampled_from("aZ09._-\n \t/é"), max_size=6) | \
    st.text(alphabet="ab", min_size=127, max_size=130)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(_near_alphabet, max_size=5))
def test_bulk_check_agrees_with_one_by_one(ids):
    assert all_valid_tenants(ids) == all(is_valid_tenant(t) for t in ids)


@pytest.mark.parametrize("bad", ["", "bad id", "x" * 129, "a\nb"])
@pytest.mark.parametrize("at", [0, 16383, 16384, 40000])
def test_bulk_check_finds_a_bad_id_anywhere_in_a_long_list(bad, at):
    ids = [f"t{i}" for i in range(50000)]
    assert all_valid_tenants(ids)
    ids[at] = bad
    assert not all_valid_tenants(ids)
