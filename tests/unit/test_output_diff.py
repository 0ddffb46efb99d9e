"""flowship.deploy.diff.compare: outputs paired by input address, compared field by field."""

from __future__ import annotations

from flowship.deploy.diff import EXAMPLES, Output, compare, decoder

SCHEMA = {
    "type": "record",
    "name": "Out",
    "fields": [{"name": "user", "type": "string"}, {"name": "clicks", "type": "long"}],
}
SCHEMA_V2 = {
    "type": "record",
    "name": "Out",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "clicks", "type": "long"},
        {"name": "page", "type": ["null", "string"], "default": None},
    ],
}
V1, V2 = decoder(SCHEMA), decoder(SCHEMA_V2)


def out(address: str | None, user: str, clicks: int, *, key: bytes | None = b"k") -> Output:
    import io

    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(SCHEMA), {"user": user, "clicks": clicks})
    return Output(address, key, buf.getvalue())


def out_v2(address: str, user: str, clicks: int, page: str | None) -> Output:
    import io

    from fastavro import parse_schema, schemaless_writer

    buf = io.BytesIO()
    schemaless_writer(
        buf, parse_schema(SCHEMA_V2), {"user": user, "clicks": clicks, "page": page}
    )
    return Output(address, b"k", buf.getvalue())


def test_the_same_outputs_in_another_order_are_equal() -> None:
    production = [out("in/0/5", "a", 1), out("in/1/7", "b", 2), out("in/0/6", "a", 2)]
    candidate = list(reversed(production))
    diff = compare(production, candidate, V1, V1)
    assert (diff.compared, diff.equal, diff.different) == (3, 3, 0)
    assert diff.fields == {} and diff.examples == []
    assert (diff.only_production, diff.only_candidate) == (0, 0)


def test_differences_are_counted_per_field_with_examples() -> None:
    production = [out(f"in/0/{i}", "a", i) for i in range(10)]
    candidate = [out(f"in/0/{i}", "a", i + (1 if i % 2 else 0)) for i in range(10)]
    diff = compare(production, candidate, V1, V1)
    assert (diff.compared, diff.equal, diff.different) == (10, 5, 5)
    assert diff.fields == {"clicks": 5}
    assert len(diff.examples) == EXAMPLES
    first = diff.examples[0]
    assert first["input"] == "in/0/1" and first["fields"] == ["clicks"]
    assert first["production"] == [{"key": "k", "value": {"user": "a", "clicks": 1}}]
    assert first["candidate"] == [{"key": "k", "value": {"user": "a", "clicks": 2}}]
    assert "5 different (clicks x5)" in diff.summary()


def test_each_side_is_decoded_with_its_own_schema() -> None:
    production = [out("in/0/1", "a", 1), out("in/0/2", "a", 2)]
    candidate = [out_v2("in/0/1", "a", 1, None), out_v2("in/0/2", "a", 2, "/cart")]
    diff = compare(production, candidate, V1, V2)
    # a field only the new version writes differs where it is not what the old one implies
    assert (diff.equal, diff.different, diff.fields) == (1, 1, {"page": 1})


def test_keys_output_counts_and_undecodable_values_are_differences() -> None:
    production = [
        out("in/0/1", "a", 1),
        out("in/0/2", "a", 2),
        out("in/0/3", "a", 3),
        Output("in/0/4", b"k", b"\x01\x02"),
    ]
    candidate = [
        out("in/0/1", "a", 1, key=b"other"),
        out("in/0/2", "a", 2),
        out("in/0/2", "a", 2),
        out("in/0/3", "a", 3),
        out("in/0/4", "a", 4),
    ]
    diff = compare(production, candidate, V1, V1)
    assert diff.fields == {"(key)": 1, "(outputs)": 1, "(bytes)": 1, "user": 1, "clicks": 1}
    assert (diff.equal, diff.different) == (1, 3)


def test_inputs_with_several_outputs_compare_as_a_whole_in_any_order() -> None:
    one, two = out("in/0/1", "a", 1), out("in/0/1", "a", 2)
    # the same object twice is two outputs (the grouping must not take it for one)
    production = [one, two, out("in/0/2", "b", 1), out("in/0/3", "c", 1)]
    candidate = [two, one, out("in/0/2", "b", 1), out("in/0/3", "c", 1), out("in/0/3", "c", 1)]
    diff = compare(production, candidate, V1, V1)
    assert (diff.compared, diff.equal, diff.different) == (3, 2, 1)
    assert diff.fields == {"(outputs)": 1}
    assert [e["input"] for e in diff.examples] == ["in/0/3"]
    same = out("in/0/9", "z", 9)
    twice = compare([same, same], [same], V1, V1)
    assert (twice.different, twice.fields) == (1, {"(outputs)": 1})


def test_unpaired_inputs_count_only_within_the_range_the_candidate_read() -> None:
    # production wrote for offsets 0..9 of partition 0 and 0..4 of partition 1; the candidate
    # started at offset 3 of partition 0, dropped offset 5, and read past where production is
    production = [out(f"in/0/{i}", "a", i) for i in range(10)]
    production += [out(f"in/1/{i}", "b", i) for i in range(5)]
    candidate = [out(f"in/0/{i}", "a", i) for i in range(3, 12) if i != 5]
    diff = compare(production, candidate, V1, V1)
    assert diff.compared == 6  # 3, 4, 6, 7, 8, 9
    assert diff.only_production == 1  # offset 5; 0..2 and partition 1 were never read
    assert diff.only_candidate == 2  # 10, 11: production had not written them
    assert diff.equal == 6


def test_outputs_without_an_input_address_are_counted_not_compared() -> None:
    production = [out(None, "a", 1), out("in/0/1", "a", 1)]
    candidate = [out(None, "a", 9), out(None, "a", 9), out("in/0/1", "a", 1)]
    diff = compare(production, candidate, V1, V1)
    assert (diff.unaddressed_production, diff.unaddressed_candidate) == (1, 2)
    assert (diff.compared, diff.equal) == (1, 1)
    assert "3 outputs without an input address not compared" in diff.summary()


def test_a_tolerance_forgives_ignored_fields_and_numbers_close_enough() -> None:
    from flowship.deploy.diff import Tolerance

    production = [out("in/0/1", "a", 100), out("in/0/2", "b", 5), out("in/0/3", "c", 7)]
    candidate = [out("in/0/1", "a", 101), out("in/0/2", "x", 5), out("in/0/3", "c", 9)]
    exact = compare(production, candidate, V1, V1)
    assert exact.fields == {"clicks": 2, "user": 1}
    loose = compare(production, candidate, V1, V1, tolerance=Tolerance(frozenset({"user"}), 1.0))
    assert (loose.different, loose.fields) == (1, {"clicks": 1})  # 7 -> 9 is 2 apart
    relative = Tolerance(relative=0.01)
    assert relative.same("x", 100.0, 100.9) and not relative.same("x", 100.0, 102.0)
    assert not relative.same("flag", True, False) and not relative.same("s", "1", "1.0")
    assert not Tolerance(absolute=5).same("x", None, 1)
    assert Tolerance(frozenset({"(outputs)"})).same("(outputs)", 1, 2)


def test_a_policy_passes_fails_or_waits_for_enough_pairs() -> None:
    from flowship.deploy.diff import DiffPolicy, OutputDiff, judge

    ten = OutputDiff("p", "c", compared=990, equal=985, different=5, only_production=10)
    verdict = judge([ten], DiffPolicy(min_pairs=1000, max_diff_rate=0.02))
    assert (verdict.outcome, verdict.pairs, verdict.differing) == ("pass", 1000, 15)
    assert verdict.rate == 0.015
    assert judge([ten], DiffPolicy(min_pairs=1000, max_diff_rate=0.01)).outcome == "fail"
    few = judge([OutputDiff("p", "c", compared=10, equal=10)], DiffPolicy(min_pairs=1000))
    assert few.outcome == "undecided" and "only 10 inputs compared" in few.reason
    both = [ten, OutputDiff("p2", "c2", compared=1000, equal=1000, only_candidate=1)]
    assert judge(both, DiffPolicy(min_pairs=1, max_diff_rate=0.0)).differing == 16
