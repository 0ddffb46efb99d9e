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


def load_json(schema: Any, *, where: str = "schema") -> Any:
    """Return ``schema`` as plain JSON data (dict, list or type name) without validating it.

    Accepts a mapping, a list (union), JSON text, a bare primitive name such as ``int``, or a
    :class:`~pathlib.Path` / ``*.avsc`` string naming a file.
    """
    if isinstance(schema, Path) or (isinstance(schema, str) and schema.endswith(".avsc")):
        path = Path(schema)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"{where}: cannot read Avro schema file {path}: {exc}"
            raise SchemaError(msg) from exc
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
        msg = f"{where}: invalid Avro schema: {exc}; fix the schema so that it parses"
        raise SchemaError(msg) from exc
    return parsed
