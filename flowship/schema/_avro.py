"""Avro schema parsing and a strict schemaless codec (one schema, binary encoding)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro
from fastavro import schemaless_reader, schemaless_writer

from flowship.errors import PayloadError, SchemaError
from flowship.schema._load import parse_problem, read_schema_file, schema_file

SchemaLike = Mapping[str, Any] | str | Path


def parse_schema(schema: SchemaLike, *, where: str = "schema") -> dict[str, Any]:
    """Parse an Avro schema given as a dict, a JSON string, or a path to an ``.avsc`` file.

    Raises :class:`SchemaError` naming ``where`` when it is not valid Avro.
    """
    raw: Any = schema
    path = schema_file(schema)
    if path is not None:
        raw = read_schema_file(path, where=where)
        where = f"{where} ({path})"
    elif isinstance(schema, str):
        try:
            raw = json.loads(schema)
        except json.JSONDecodeError as exc:
            msg = f"{where}: schema is not valid JSON ({exc}); pass a dict, JSON text or .avsc path"
            raise SchemaError(msg) from exc
    if not isinstance(raw, Mapping) or raw.get("type") != "record":
        msg = f'{where}: expected an Avro record schema (a JSON object with "type": "record")'
        raise SchemaError(msg)
    try:
        parsed = fastavro.parse_schema(dict(raw), _write_hint=False)
        # validate once without the hint (the returned dict stays plain, JSON-serializable)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        msg = f"{where}: invalid Avro schema: {parse_problem(exc)}"
        raise SchemaError(msg) from exc
    assert isinstance(parsed, dict)  # a record schema parses to a dict
    return parsed


class AvroCodec:
    """Encode and decode Avro binary (no container, no header) with one schema.

    Decoding is strict: a payload must be consumed exactly, so trailing bytes are an error, not
    silently ignored as fastavro would.
    """

    __slots__ = ("_parsed", "name", "schema")

    def __init__(self, schema: SchemaLike, *, where: str = "schema") -> None:
        self.schema: dict[str, Any] = parse_schema(schema, where=where)
        # parsed with fastavro's hint, so the reader/writer do not re-parse on every call
        self._parsed: dict[str, Any] = fastavro.parse_schema(self.schema)  # type: ignore[assignment]
        self.name: str = str(self._parsed.get("name", "record"))

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Decode one payload; raise :class:`PayloadError` if it does not fit the schema."""
        if payload is None:
            msg = f"payload for {self.name} is null (a tombstone?); expected Avro binary"
            raise PayloadError(msg)
        buf = io.BytesIO(payload)
        try:
            value = schemaless_reader(buf, self._parsed, None)
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ...
            msg = f"payload does not decode as {self.name}: {type(exc).__name__}: {exc}"
            raise PayloadError(msg) from exc
        if buf.tell() != len(payload):
            msg = (
                f"payload does not decode as {self.name}: {len(payload) - buf.tell()} "
                f"trailing bytes after a {buf.tell()}-byte record"
            )
            raise PayloadError(msg)
        if not isinstance(value, dict):
            msg = f"payload for {self.name} decoded to {type(value).__name__}, expected a record"
            raise PayloadError(msg)
        return value

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode one record; raise :class:`PayloadError` naming the problem if it does not fit."""
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, self._parsed, value)
        except Exception as exc:  # ValueError, TypeError, KeyError, AttributeError ...
            msg = f"value does not encode as {self.name}: {type(exc).__name__}: {exc}"
            raise PayloadError(msg) from exc
        return buf.getvalue()
