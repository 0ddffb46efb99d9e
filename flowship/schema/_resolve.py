r"""Finish what fastavro's schema resolution leaves raw, so a value looks written by the reader.

fastavro (1.13) resolves a writer/reader pair but

* returns a reader field's *default* exactly as it is in the schema JSON: a bytes default
  ``"\u00ff"`` comes back as a ``str``, a ``timestamp-millis`` default as an ``int``, a decimal
  default as a ``str`` -- and the same list/dict object every time, shared with the schema;
* applies the *writer's* logical type: a plain ``long`` read as ``timestamp-millis`` stays an
  ``int``, a ``timestamp-millis`` read as plain ``long`` becomes a ``datetime``.

:func:`build_fixer` compiles, once per (writer, reader) pair of fastavro-parsed schemas, a
function that repairs exactly those spots of a resolved value (``None`` when nothing needs it).
Limit: inside a union, the branch a value came from is recognised by its Python shape (a record
by its field names, a datetime by its class, ...); two branches of the same shape that both need
repairs are told apart only by that.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

from fastavro.read import LOGICAL_READERS
from fastavro.write import LOGICAL_WRITERS

Fixer = Callable[[Any], Any]
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "error", "enum", "fixed"}


def collect_names(schema: Any, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full name -> definition of every named type in a fastavro-parsed schema."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for branch in schema:
            collect_names(branch, out)
    elif isinstance(schema, dict):
        if schema.get("type") in _NAMED:
            out[schema["name"]] = schema
        for field in schema.get("fields", []):
            collect_names(field["type"], out)
        for key in ("items", "values"):
            if key in schema:
                collect_names(schema[key], out)
    return out


def build_fixer(writer: Any, reader: Any) -> Fixer | None:
    """A function repairing values resolved from ``writer`` to ``reader`` (None: no repairs)."""
    return _Builder(collect_names(writer), collect_names(reader)).fixer(writer, reader)


def default_value(schema: Any, default: Any, names: dict[str, Any]) -> Any:
    """An Avro JSON default turned into the value a reader of ``schema`` would decode."""
    schema = _deref(schema, names)
    if isinstance(schema, list):
        return default_value(schema[0], default, names)  # a union default is for branch 0
    kind = _type(schema)
    if kind == "record":
        value: Any = {}
        for field in schema["fields"]:
            given = default if isinstance(default, dict) else {}
            raw = given.get(field["name"], field.get("default"))
            value[field["name"]] = default_value(field["type"], raw, names)
    elif kind == "array":
        value = [default_value(schema["items"], d, names) for d in default]
    elif kind == "map":
        value = {k: default_value(schema["values"], d, names) for k, d in default.items()}
    elif kind in ("bytes", "fixed") and isinstance(default, str):
        value = default.encode("latin-1")  # spec: code points 0-255 are the byte values
    elif kind in ("float", "double"):
        value = float(default)
    else:
        value = default
    return _to_logical(value, schema)


class _Builder:
    def __init__(self, writer_names: dict[str, Any], reader_names: dict[str, Any]) -> None:
        self.w_names, self.r_names = writer_names, reader_names
        self.memo: dict[tuple[int, int], Fixer | None] = {}

    def fixer(self, writer: Any, reader: Any) -> Fixer | None:
        writer, reader = _deref(writer, self.w_names), _deref(reader, self.r_names)
        key = (id(writer), id(reader))
        if key in self.memo:
            return self.memo[key]
        cell: list[Fixer | None] = [None]
        self.memo[key] = lambda v: cell[0](v) if cell[0] else v  # recursive types
        cell[0] = self._build(writer, reader)
        self.memo[key] = cell[0]
        return cell[0]

    def _build(self, writer: Any, reader: Any) -> Fixer | None:
        if isinstance(writer, list) or isinstance(reader, list):
            return self._union(writer, reader)
        kind = _type(reader)
        if kind in ("record", "error") and _type(writer) in ("record", "error"):
            return self._record(writer, reader)
        if kind == "array" and _type(writer) == "array":
            items = self.fixer(writer["items"], reader["items"])
            return None if items is None else lambda v: [items(x) for x in v]
        if kind == "map" and _type(writer) == "map":
            values = self.fixer(writer["values"], reader["values"])
            return None if values is None else lambda v: {k: values(x) for k, x in v.items()}
        if _logical(writer) == _logical(reader):
            return None
        return lambda v: _to_logical(_promote(_to_physical(v, writer), writer, reader), reader)

    def _union(self, writer: Any, reader: Any) -> Fixer | None:
        w_branches = writer if isinstance(writer, list) else [writer]
        pairs = []
        for wb in w_branches:
            rb = reader
            if isinstance(reader, list):
                rb = next((b for b in reader if self._matches(wb, b)), None)
            fix = None if rb is None else self.fixer(wb, rb)
            if fix is not None:
                pairs.append((_deref(wb, self.w_names), _deref(rb, self.r_names), fix))
        if not pairs:
            return None

        def fix_union(value: Any) -> Any:
            for wb, rb, fix in pairs:
                if _shape_matches(value, wb, rb):
                    return fix(value)
            return value

        return fix_union

    def _record(self, writer: dict[str, Any], reader: dict[str, Any]) -> Fixer | None:
        by_name = {f["name"]: f for f in writer["fields"]}
        added: dict[str, Any] = {}
        nested: dict[str, Fixer] = {}
        for field in reader["fields"]:
            source = by_name.get(field["name"])
            for alias in field.get("aliases", []):
                source = source or by_name.get(alias)
            if source is None:
                added[field["name"]] = default_value(
                    field["type"], field.get("default"), self.r_names
                )
            elif (fix := self.fixer(source["type"], field["type"])) is not None:
                nested[field["name"]] = fix
        if not added and not nested:
            return None

        def fix_record(value: dict[str, Any]) -> dict[str, Any]:
            for name, default in added.items():
                value[name] = copy.deepcopy(default)  # never share the schema's object
            for name, fix in nested.items():
                value[name] = fix(value[name])
            return value

        return fix_record

    def _matches(self, writer: Any, reader: Any) -> bool:
        """The union branch fastavro (and the spec) choose of reader union branch, shallowly."""
        writer, reader = _deref(writer, self.w_names), _deref(reader, self.r_names)
        wt, rt = _type(writer), _type(reader)
        promotions = {
            "int": {"long", "float", "double"},
            "long": {"float", "double"},
            "float": {"double"},
            "string": {"bytes"},
            "bytes": {"string"},
        }
        if wt != rt:
            return rt in promotions.get(wt, set())
        if wt in _NAMED:
            short = writer["name"].rsplit(".", 1)[-1]
            return short == reader["name"].rsplit(".", 1)[-1] or writer["name"] in {
                a if "." in a else f"{reader['name'].rpartition('.')[0]}.{a}".lstrip(".")
                for a in reader.get("aliases", [])
            }
        return True


def _deref(schema: Any, names: dict[str, Any]) -> Any:
    return names.get(schema, schema) if isinstance(schema, str) else schema


def _type(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _to_logical(value: Any, schema: Any) -> Any:
    fn = LOGICAL_READERS.get(f"{_type(schema)}-{_logical(schema)}")
    return value if fn is None or value is None else fn(value, schema, schema)


def _to_physical(value: Any, schema: Any) -> Any:
    fn = LOGICAL_WRITERS.get(f"{_type(schema)}-{_logical(schema)}")
    return value if fn is None else fn(value, schema)


def _promote(value: Any, writer: Any, reader: Any) -> Any:
    wt, rt = _type(writer), _type(reader)
    if wt == rt:
        return value
    if rt in ("float", "double"):
        return float(value)
    if rt == "bytes" and isinstance(value, str):
        return value.encode()
    if rt == "string" and isinstance(value, bytes):
        return value.decode()
    return value


_LOGICAL_CLASSES: dict[str, tuple[type, ...]] = {
    "decimal": (decimal.Decimal,),
    "uuid": (uuid.UUID,),
    "date": (datetime.date,),
    "time-millis": (datetime.time,),
    "time-micros": (datetime.time,),
}
_PHYSICAL_CLASSES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (float,),
    "double": (float,),
    "bytes": (bytes,),
    "fixed": (bytes,),
    "string": (str,),
    "enum": (str,),
    "array": (list,),
    "map": (dict,),
}


def _shape_matches(value: Any, writer: Any, reader: Any) -> bool:
    """Whether a resolved ``value`` came through this (writer branch, reader branch) pair."""
    if _type(reader) in ("record", "error"):
        return isinstance(value, dict) and set(value) == {f["name"] for f in reader["fields"]}
    logical = _logical(writer)
    if logical and logical.endswith(("timestamp-millis", "timestamp-micros")):
        return isinstance(value, datetime.datetime)
    if logical in _LOGICAL_CLASSES:
        return isinstance(value, _LOGICAL_CLASSES[logical]) and not (
            logical == "date" and isinstance(value, datetime.datetime)
        )
    classes = _PHYSICAL_CLASSES.get(_type(reader), ())
    if _type(reader) in ("int", "long") and isinstance(value, bool):
        return False
    return isinstance(value, classes)
