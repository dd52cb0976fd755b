"""router.process.share: a pin table rebuilt by insertion, with shared stamp-name values."""

from router.process.share import SLICE, rebuilt


def test_the_same_pins_in_the_same_order_with_shared_values():
    names = {"eu-1": "eu-1", "eu-2": "eu-2"}
    table = {f"t{i}": "".join(["eu-", str(1 + i % 2)]) for i in range(2 * SLICE + 5)}   # a new object each
    assert len({id(v) for v in table.values()}) == len(table)
    out = rebuilt(table, names)
    assert out == table and list(out) == list(table) and out is not table
    assert {id(v) for v in out.values()} == {id(names["eu-1"]), id(names["eu-2"])}


def test_a_value_that_is_no_stamp_name_stays_as_it_is():
    table = {f"t{i}": f"x{i}" for i in range(10)}
    assert rebuilt(table, {"eu-1": "eu-1"}) == table


def test_stop_ends_it_between_slices():
    calls = []
    assert rebuilt({f"t{i}": "eu-1" for i in range(3 * SLICE)}, {}, stop=lambda: calls.append(1) or len(calls) > 1) is None
    assert len(calls) == 2
