"""StateSchema validation at declaration time, and pydantic model derivation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flowship.errors import SchemaError
from flowship.schema import StateSchema, check_compatibility, fingerprint, model_to_avro


def rec(*fields: dict[str, Any], name: str = "Counter") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


V1 = rec({"name": "count", "type": "int"})
V2 = rec({"name": "count", "type": "long"}, {"name": "label", "type": "string", "default": ""})
V3 = rec({"name": "count", "type": "string"}, {"name": "label", "type": "string"})


def test_versions_fingerprints_and_describe(tmp_path: Path) -> None:
    avsc = tmp_path / "v2.avsc"
    avsc.write_text(json.dumps(V2))
    schema = StateSchema("counts", {1: json.dumps(V1), 2: avsc, 3: V3},
                         migrations={3: lambda v: {"count": str(v["count"]), "label": "x"}})
    assert schema.current == 3
    assert schema.schema(2) == V2 and schema.schema() == V3
    assert [schema.fingerprint(n) for n in (1, 2, 3)] == [fingerprint(v) for v in (V1, V2, V3)]
    assert schema.version_of(fingerprint(V2)) == 2
    assert schema.version_of(12345) is None
    described = json.loads(json.dumps(schema.describe()))
    assert described["migrations"] == [3]
    assert [v["fingerprint"] for v in described["versions"]] == [
        f"{fingerprint(v):016x}" for v in (V1, V2, V3)]
    assert described["versions"][1]["schema"] == V2


def test_version_gap_names_the_missing_version() -> None:
    with pytest.raises(SchemaError, match="version 2 is missing"):
        StateSchema("counts", {1: V1, 3: V2})


@pytest.mark.parametrize("versions", [{}, {0: V1}, {"1": V1}])
def test_bad_version_numbers(versions: dict[Any, Any]) -> None:
    with pytest.raises(SchemaError, match="counts"):
        StateSchema("counts", versions)


@pytest.mark.parametrize("bad", ["{oops", {"type": "record", "name": "R"}, '"int"',
                                 rec({"name": "a", "type": "int", "default": "no"})])
def test_unparsable_version(bad: Any) -> None:
    with pytest.raises(SchemaError, match="'counts' version 2"):
        StateSchema("counts", {1: V1, 2: bad})


def test_incompatible_step_without_migration() -> None:
    with pytest.raises(SchemaError) as info:
        StateSchema("counts", {1: V1, 2: V2, 3: V3})
    text = str(info.value)
    assert "version 2 cannot be read as version 3" in text
    assert "type_mismatch" in text and "missing_default" not in text
    assert "declare migrations={3: fn} or make the change compatible" in text


def test_bad_migrations() -> None:
    with pytest.raises(SchemaError, match=r"migrations\[1\] is not a step"):
        StateSchema("counts", {1: V1, 2: V2}, migrations={1: lambda v: v})
    with pytest.raises(SchemaError, match="must be a function"):
        StateSchema("counts", {1: V1, 2: V2}, migrations={2: "nope"})  # type: ignore[dict-item]


def test_same_fingerprint_needing_different_handling_is_refused() -> None:
    millis = rec({"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}})
    micros = rec({"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}})
    with pytest.raises(SchemaError, match="same fingerprint"):
        StateSchema("ts", {1: millis, 2: micros}, migrations={2: lambda v: v})
    # only a default added: same bytes, so values are simply read as the newer version
    with_default = rec({"name": "count", "type": "int", "default": 0})
    assert StateSchema("c", {1: V1, 2: with_default}).version_of(fingerprint(V1)) == 2


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class Customer(BaseModel):
    name: str
    visits: int = 0
    score: float = 1.5
    active: bool = True
    avatar: bytes = b"\xff"
    nickname: str | None = None
    tags: list[str] = Field(default_factory=list)
    counts: dict[str, int] = {}
    home: Address
    previous: list[Address] = []
    referrer: str | None = "nobody"


def test_pydantic_model_derivation() -> None:
    schema = model_to_avro(Customer)
    fields = {f["name"]: f for f in schema["fields"]}
    assert schema["type"] == "record" and schema["name"] == "Customer"
    assert fields["name"] == {"name": "name", "type": "string"}
    assert fields["visits"] == {"name": "visits", "type": "long", "default": 0}
    assert fields["score"]["type"] == "double" and fields["active"]["type"] == "boolean"
    assert fields["avatar"] == {"name": "avatar", "type": "bytes", "default": "\u00ff"}
    assert fields["nickname"] == {"name": "nickname", "type": ["null", "string"],
                                  "default": None}
    assert fields["tags"] == {"name": "tags", "type": {"type": "array", "items": "string"},
                              "default": []}
    assert fields["counts"]["type"] == {"type": "map", "values": "long"}
    assert fields["home"]["type"]["type"] == "record"
    assert fields["home"]["type"]["fields"][1]["type"] == ["null", "string"]
    assert fields["previous"]["type"] == {"type": "array", "items": "Address"}
    assert fields["referrer"] == {"name": "referrer", "type": ["string", "null"],
                                  "default": "nobody"}
    assert check_compatibility(schema, schema).compatible
    state = StateSchema("customers", {1: Customer})
    assert state.schema(1) == schema


def test_unsupported_pydantic_type() -> None:
    class Bad(BaseModel):
        when: set[int]

    with pytest.raises(SchemaError, match=r"Bad.when: cannot derive an Avro type"):
        StateSchema("bad", {1: Bad})
