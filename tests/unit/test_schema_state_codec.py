"""StateCodec: header, round trips, resolution across versions, defaults, clear errors."""

from __future__ import annotations

import datetime
import decimal
import struct
from typing import Any

import pytest

from flowship.errors import FlowshipError
from flowship.schema import StateCodec, StateError, StateSchema, fingerprint


def rec(*fields: dict[str, Any], name: str = "S") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name: str, type_: Any, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **kw}


TS = {"type": "long", "logicalType": "timestamp-millis"}
V1 = rec(f("count", "int"), f("who", "string"))
V2 = rec(f("count", "long"), f("user", "string", aliases=["who"]),
         f("tags", {"type": "array", "items": "string"}, default=[]))
V3 = rec(f("count", "long"), f("user", "string"), f("tags", {"type": "array", "items": "string"}),
         f("raw", "bytes", default="\u00ff\u0001"), f("since", TS, default=1000),
         f("price", {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2},
           default="\u0001\u0000"),
         f("last", ["null", rec(f("at", TS), f("note", "bytes", default="n/á"), name="Last")],
           default=None))
V4 = rec(f("total", "string"), f("user", "string"), f("tags", {"type": "array", "items": "string"}))


def write_as(versions: dict[int, Any], value: Any) -> bytes:
    return StateCodec(StateSchema("s", versions)).encode(value)


def test_header_and_round_trip() -> None:
    codec = StateCodec(StateSchema("s", {1: V1, 2: V2}))
    data = codec.encode({"count": 3, "user": "ann", "tags": ["a"]})
    assert data[0] == 0x01
    assert struct.unpack_from("<Q", data, 1)[0] == fingerprint(V2)
    assert codec.decode(data) == {"count": 3, "user": "ann", "tags": ["a"]}


def test_v1_to_v3_by_resolution_only() -> None:
    old = write_as({1: V1}, {"count": 7, "who": "bob"})
    codec = StateCodec(StateSchema("s", {1: V1, 2: V2, 3: V3}))
    value = codec.decode(old)
    assert value == {
        "count": 7, "user": "bob", "tags": [], "raw": b"\xff\x01",
        "since": datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=datetime.UTC),
        "price": decimal.Decimal("2.56"), "last": None}
    assert codec.decode(codec.encode(value)) == value  # it is a valid current value
    value["tags"].append("mutated")
    assert codec.decode(old)["tags"] == []  # defaults are never shared between values


def test_nested_default_inside_a_union_record() -> None:
    v3_without_note = rec(*V3["fields"][:-1], f("last", ["null", rec(f("at", TS), name="Last")],
                                                default=None))
    at = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    old = write_as({1: V1, 2: V2, 3: v3_without_note},
                   {"count": 1, "user": "u", "tags": [], "raw": b"", "since": at,
                    "price": decimal.Decimal("1.00"), "last": {"at": at}})
    value = StateCodec(StateSchema("s", {1: V1, 2: V2, 3: v3_without_note, 4: V3})).decode(old)
    assert value["last"] == {"at": at, "note": b"n/\xe1"}


def test_v1_to_v4_through_a_migration() -> None:
    seen: list[Any] = []

    def to_v4(v3: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(v3))
        return {"total": f"{v3['count']} by {v3['user']}", "user": v3["user"], "tags": ["m"]}

    schema = StateSchema("s", {1: V1, 2: V2, 3: V3, 4: V4}, migrations={4: to_v4})
    codec = StateCodec(schema)
    old = write_as({1: V1}, {"count": 2, "who": "cy"})
    assert codec.decode(old) == {"total": "2 by cy", "user": "cy", "tags": ["m"]}
    assert seen[0]["raw"] == b"\xff\x01"  # the migration sees a proper version-3 value
    v3_value = write_as({1: V1, 2: V2, 3: V3}, {**seen[0], "count": 5})
    assert codec.decode(v3_value)["total"] == "5 by cy"


def test_migration_in_the_middle_is_followed_by_resolution() -> None:
    v2 = rec(f("count", "string"))
    v3 = rec(f("count", "string"), f("extra", "long", default=9))
    schema = StateSchema("s", {1: V1, 2: v2, 3: v3},
                         migrations={2: lambda v: {"count": str(v["count"])}})
    old = write_as({1: V1}, {"count": 4, "who": "x"})
    assert StateCodec(schema).decode(old) == {"count": "4", "extra": 9}


def test_logical_type_added_reads_as_the_new_type() -> None:
    v2 = rec(f("count", "int"), f("who", "string"), f("at", TS, default=0))
    plain = rec(f("count", "int"), f("who", "string"), f("at", "long", default=0))
    old = write_as({1: V1, 2: plain}, {"count": 1, "who": "a", "at": 1500})
    value = StateCodec(StateSchema("s", {1: V1, 2: plain, 3: v2})).decode(old)
    assert value["at"] == datetime.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=datetime.UTC)


def test_error_context_and_kinds() -> None:
    codec = StateCodec(StateSchema("counts", {1: V1}))
    good = codec.encode({"count": 1, "who": "z"})
    cases = [
        (b"", "no bytes"),
        (b"\x80" + good[1:], "format byte 0x80"),
        (good[:1] + struct.pack("<Q", 42) + good[9:], f"fingerprint {42:016x}"),
        (good[:-1], "truncated or corrupt"),
        (good + b"\x00", "1 unexpected bytes"),
    ]
    for data, expected in cases:
        with pytest.raises(StateError) as info:
            codec.decode(data, uid="agg-1", state="counts", key="k7")
        text = str(info.value)
        assert expected in text
        assert "'agg-1'" in text and "'counts'" in text and "'k7'" in text
    assert issubclass(StateError, FlowshipError) and issubclass(StateError, ValueError)


def test_error_names_the_writer_fingerprint_and_the_failing_migration() -> None:
    def broken(v: Any) -> Any:
        raise KeyError("nope")

    schema = StateSchema("s", {1: V1, 2: V2, 3: V3, 4: V4}, migrations={4: broken})
    old = write_as({1: V1}, {"count": 2, "who": "cy"})
    with pytest.raises(StateError, match=rf"{fingerprint(V1):016x}.*migrations\[4\] failed"):
        StateCodec(schema).decode(old, uid="u", key=1)


def test_migration_returning_a_bad_value() -> None:
    schema = StateSchema("s", {1: V1, 2: V2, 3: V3, 4: V4}, migrations={4: lambda v: {"x": 1}})
    with pytest.raises(StateError, match=r"fix migrations\[4\]"):
        StateCodec(schema).decode(write_as({1: V1}, {"count": 2, "who": "cy"}))


def test_encode_rejects_a_value_that_does_not_fit() -> None:
    with pytest.raises(StateError, match="does not fit version 1"):
        StateCodec(StateSchema("s", {1: V1})).encode({"count": "many", "who": 1})


def test_snapshot_only_for_values_that_decode_to_themselves() -> None:
    from flowship.schema import StateCodec, StateSchema

    plain = {"type": "record", "name": "P", "fields": [
        {"name": "n", "type": "long"}, {"name": "x", "type": "double"},
        {"name": "s", "type": ["null", "string"]}, {"name": "b", "type": "boolean"},
        {"name": "raw", "type": "bytes"}]}
    codec = StateCodec(StateSchema("p", versions={1: plain}))
    value = {"s": None, "n": 1, "x": 0.5, "b": True, "raw": b"\x00"}
    snap = codec.snapshot(value)
    assert snap == value and snap is not value
    assert list(snap) == ["n", "x", "s", "b", "raw"]  # schema order, as decoding gives
    assert snap == codec.decode(codec.encode(value))
    for wrong in (
        {**value, "x": 1},  # int in a double field: decodes as 1.0
        {**value, "n": True},  # bool in a long field: refused or changed by Avro
        {**value, "extra": 1},  # dropped by encoding
        {k: v for k, v in value.items() if k != "s"},  # absent: filled by encoding
        {**value, "raw": bytearray(b"\x00")},  # mutable
    ):
        assert codec.snapshot(wrong) is None
    for kind in (
        {"type": "array", "items": "long"},  # mutable
        {"type": "long", "logicalType": "timestamp-millis"},  # decodes as a datetime
        "float",  # 32 bits: a Python float does not round-trip
        ["double", "long"],  # the int 3 is written as the double 3.0
    ):
        not_plain = {"type": "record", "name": "Q", "fields": [{"name": "q", "type": kind}]}
        other = StateCodec(StateSchema("q", versions={1: not_plain}))
        assert not other.decoded_is_plain()
