"""Load any Avro schema (dict, JSON text, ``.avsc`` path) into plain JSON plus avro's parse tree.

Shared by the compatibility checker, the fingerprint helpers and :class:`StateSchema`. Every
failure is a :class:`~flowship.errors.SchemaError` naming ``where``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema
import fastavro

from flowship.errors import SchemaError

PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"},
)


def schema_file(schema: Any) -> Path | None:
    """The file ``schema`` names (a :class:`~pathlib.Path` or an ``*.avsc`` string), or None."""
    if isinstance(schema, Path) or (isinstance(schema, str) and schema.endswith(".avsc")):
        return Path(schema)
    return None


def read_schema_file(path: Path, *, where: str = "schema") -> Any:
    """The JSON data of the ``.avsc`` file ``path``.

    A :class:`~flowship.errors.SchemaError` names ``where``, the file, and for a JSON syntax
    error its line and column, with what to fix.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = (
            f"{where}: cannot read Avro schema file {path}: {exc.strerror or exc}; check "
            "the path (a relative path is relative to the current directory; build it from the "
            "job file's directory, e.g. Path(__file__).parent / 'state' / 'x.avsc')"
        )
        raise SchemaError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = f"{where}: the Avro schema file {path} is not UTF-8 text ({exc}); save it as UTF-8"
        raise SchemaError(msg) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"{where}: the Avro schema file {path} is not valid JSON: {exc.msg} at line "
            f"{exc.lineno}, column {exc.colno}; fix the JSON syntax there (an .avsc file is one "
            "JSON object: names and strings in double quotes, a comma between items and none "
            "after the last, no comments)"
        )
        raise SchemaError(msg) from exc


def parse_problem(exc: Exception) -> str:
    """What an Avro parser's exception says, in words a schema author can act on."""
    if isinstance(exc, fastavro.schema.UnknownType):
        return (
            f"unknown type {exc.name!r}; use an Avro type (null, boolean, int, long, float, "
            "double, bytes, string, record, enum, array, map, fixed) or the name of a type "
            "declared earlier in the schema"
        )
    return f"{exc}; fix the schema so that it parses"


def load_json(schema: Any, *, where: str = "schema") -> Any:
    """Return ``schema`` as plain JSON data (dict, list or type name) without validating it.

    Accepts a mapping, a list (union), JSON text, a bare primitive name such as ``int``, or a
    :class:`~pathlib.Path` / ``*.avsc`` string naming a file.
    """
    path = schema_file(schema)
    if path is not None:
        return read_schema_file(path, where=where)
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        try:
            return json.loads(schema)
        except json.JSONDecodeError as exc:
            msg = (
                f"{where}: schema is not valid JSON ({exc}); pass a dict, JSON text, "
                "a primitive type name or an .avsc path"
            )
            raise SchemaError(msg) from exc
    if isinstance(schema, Mapping | list):
        try:
            return json.loads(json.dumps(schema))  # a deep, JSON-only copy
        except (TypeError, ValueError) as exc:
            msg = f"{where}: schema is not JSON-serializable: {exc}"
            raise SchemaError(msg) from exc
    msg = f"{where}: expected an Avro schema (dict, JSON text or .avsc path), got {schema!r}"
    raise SchemaError(msg)


def parse_avro(raw: Any, *, where: str = "schema") -> avro.schema.Schema:
    """Parse JSON schema data with avro (the Java port) and check it with fastavro as well.

    avro does not check field defaults against their types; fastavro does, so both run.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IgnoredLogicalType: reported by the checker instead
            parsed = avro.schema.parse(json.dumps(raw))
        fastavro.parse_schema(raw, _write_hint=False)
    except (
        avro.errors.AvroException,
        fastavro.schema.SchemaParseException,
        fastavro.schema.UnknownType,
        ValueError,
        TypeError,
        KeyError,
    ) as exc:
        msg = f"{where}: invalid Avro schema: {parse_problem(exc)}"
        raise SchemaError(msg) from exc
    return parsed
