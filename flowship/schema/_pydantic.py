"""Derive an Avro record schema from a pydantic model class.

Mapping: ``str`` -> string, ``int`` -> long, ``float`` -> double, ``bool`` -> boolean,
``bytes`` -> bytes, ``X | None`` -> ``["null", X]`` (default null unless the field has another
default, then ``[X, "null"]``), ``list[X]`` -> array, ``dict[str, X]`` -> map, a nested model ->
record (named after the class; later uses refer to it by name, so recursive models work).
Field defaults (and ``default_factory`` results) become Avro defaults.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from flowship.errors import SchemaError

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}
_SUPPORTED = "str, int, float, bool, bytes, X | None, list[X], dict[str, X], nested models"


def is_model_class(obj: Any) -> bool:
    """Whether ``obj`` is a pydantic model class (not an instance)."""
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def model_to_avro(model: type[BaseModel], *, namespace: str | None = None) -> dict[str, Any]:
    """The Avro record schema for ``model``; raises :class:`SchemaError` for unsupported types."""
    return _record(model, namespace, set())


def _record(model: type[BaseModel], namespace: str | None, defined: set[str]) -> dict[str, Any]:
    defined.add(model.__name__)
    fields = []
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        avro_type = _type(info.annotation, where, namespace, defined)
        field: dict[str, Any] = {"name": name, "type": avro_type}
        default = info.default
        if default is PydanticUndefined and info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        if default is not PydanticUndefined:
            if isinstance(avro_type, list) and default is not None:
                field["type"] = [*avro_type[1:], "null"]  # a union default matches branch 0
            field["default"] = _json_default(default)
        elif isinstance(avro_type, list):
            field["default"] = None
        fields.append(field)
    schema: dict[str, Any] = {"type": "record", "name": model.__name__, "fields": fields}
    if namespace:
        schema["namespace"] = namespace
    return schema


def _type(annotation: Any, where: str, namespace: str | None, defined: set[str]) -> Any:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if is_model_class(annotation):
        if annotation.__name__ in defined:
            return annotation.__name__
        return _record(annotation, namespace, defined)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return ["null", _type(inner, where, namespace, defined)]
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _type(args[0], where, namespace, defined)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "map", "values": _type(args[1], where, namespace, defined)}
    msg = (
        f"{where}: cannot derive an Avro type from {annotation!r}; supported: {_SUPPORTED}. "
        "Declare the state schema as an Avro dict instead"
    )
    raise SchemaError(msg)


def _json_default(value: Any) -> Any:
    """A Python default as Avro JSON (bytes map code points 0-255, models become dicts)."""
    if isinstance(value, BaseModel):
        return _json_default(value.model_dump())
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, list | tuple):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_default(v) for k, v in value.items()}
    return value
