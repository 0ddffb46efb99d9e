"""The rule walker behind :func:`flowship.schema.check_compatibility`.

It walks a reader schema against a writer schema (both parsed by avro) following the resolution
rules of the Avro specification, and records each problem with a JSON pointer into the reader
schema. Named types are reported at their definition, once per (reader, writer) pair, which also
ends the walk on recursive types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from avro.schema import (
    ArraySchema,
    EnumSchema,
    Field,
    FixedSchema,
    MapSchema,
    NamedSchema,
    RecordSchema,
    Schema,
    UnionSchema,
)

# writer type -> reader types it may be promoted to (Avro spec, "Schema Resolution")
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
LOSSY = {
    ("int", "float"): "float has a 24-bit mantissa: ints above 2**24 lose precision",
    ("long", "float"): "float has a 24-bit mantissa: longs above 2**24 lose precision",
    ("long", "double"): "double has a 53-bit mantissa: longs above 2**53 lose precision",
    ("bytes", "string"): "bytes that are not valid UTF-8 fail to decode as string",
}
TIME_UNITS = {  # logical type -> (family, unit)
    "time-millis": ("time", "millis"),
    "time-micros": ("time", "micros"),
    "timestamp-millis": ("timestamp", "millis"),
    "timestamp-micros": ("timestamp", "micros"),
    "timestamp-nanos": ("timestamp", "nanos"),
    "local-timestamp-millis": ("local-timestamp", "millis"),
    "local-timestamp-micros": ("local-timestamp", "micros"),
    "local-timestamp-nanos": ("local-timestamp", "nanos"),
}
MIGRATE = "or write a migrate function for this version"


@dataclass(frozen=True)
class Found:
    """One problem as the walker found it (turned into a public ``Problem`` by the caller)."""

    kind: str
    severity: str
    path: str
    message: str
    hint: str


def prop(schema: Any, key: str, default: Any = None) -> Any:
    """A schema property (``logicalType``, ``aliases``, ``scale``...) with a default."""
    return schema.props.get(key, default)


def at(where: str) -> str:
    """Human label of a location: ``field 'a.b[]'`` or ``top level``."""
    return f"field {where!r}" if where else "top level"


def describe(schema: Schema) -> str:
    """Short human description of a schema: ``long (timestamp-millis)``, ``record a.B``, ..."""
    if isinstance(schema, UnionSchema):
        return "union [" + ", ".join(describe(s) for s in schema.schemas) + "]"
    if isinstance(schema, ArraySchema):
        return f"array<{describe(schema.items)}>"
    if isinstance(schema, MapSchema):
        return f"map<{describe(schema.values)}>"
    text = f"{schema.type} {schema.fullname}" if isinstance(schema, NamedSchema) else schema.type
    logical = prop(schema, "logicalType")
    return f"{text} ({logical})" if logical else str(text)


def definition_paths(raw: Any, parsed: Schema, path: str = "") -> dict[int, str]:
    """Map ``id()`` of every named type in ``parsed`` to the JSON pointer of its definition."""
    out: dict[int, str] = {}
    _collect(raw, parsed, path, out)
    return out


def _collect(raw: Any, parsed: Schema, path: str, out: dict[int, str]) -> None:
    if isinstance(raw, list) and isinstance(parsed, UnionSchema):
        for i, (r, p) in enumerate(zip(raw, parsed.schemas, strict=False)):
            _collect(r, p, f"{path}/{i}", out)
    if not isinstance(raw, dict):
        return  # a type name: a primitive or a reference to a named type defined elsewhere
    if isinstance(parsed, NamedSchema):
        if id(parsed) in out:
            return
        out[id(parsed)] = path
    if isinstance(parsed, RecordSchema):
        for i, (rf, pf) in enumerate(zip(raw.get("fields", []), parsed.fields, strict=False)):
            _collect(rf.get("type"), pf.type, f"{path}/fields/{i}/type", out)
    elif isinstance(parsed, ArraySchema):
        _collect(raw.get("items"), parsed.items, f"{path}/items", out)
    elif isinstance(parsed, MapSchema):
        _collect(raw.get("values"), parsed.values, f"{path}/values", out)


def alias_fullnames(schema: NamedSchema) -> set[str]:
    """Aliases of a named type as full names (relative aliases take the type's namespace)."""
    aliases = prop(schema, "aliases") or []
    space = schema.namespace
    return {a if "." in a or not space else f"{space}.{a}" for a in aliases}


def names_match(reader: NamedSchema, writer: NamedSchema) -> bool:
    """Avro name rule: same unqualified name, or the writer's full name is a reader alias."""
    return reader.name == writer.name or writer.fullname in alias_fullnames(reader)


def shallow_match(reader: Schema, writer: Schema) -> bool:
    """Whether ``reader`` is the branch chosen for ``writer`` (spec: first one that matches)."""
    if reader.type != writer.type:
        return reader.type in PROMOTIONS.get(writer.type, set())
    if isinstance(reader, NamedSchema) and isinstance(writer, NamedSchema):
        return names_match(reader, writer)
    return True


def writer_field(writer: RecordSchema, field: Field) -> Field | None:
    """The writer field a reader field reads: same name first, then the reader's aliases."""
    found = writer.fields_dict.get(field.name)
    for alias in prop(field, "aliases") or []:
        found = found or writer.fields_dict.get(alias)
    return found


class Walker:
    """Collects :class:`Found` problems for one reader/writer pair."""

    def __init__(self, reader_paths: dict[int, str]) -> None:
        self.found: list[Found] = []
        self._paths = reader_paths
        self._seen: set[tuple[int, int]] = set()

    def add(self, kind: str, severity: str, path: str, message: str, hint: str) -> None:
        """Record one problem."""
        self.found.append(Found(kind, severity, path or "", message, hint))

    def errors(self) -> Iterator[Found]:
        """The problems of severity ``error`` found so far."""
        return (f for f in self.found if f.severity == "error")

    def visit(self, reader: Schema, writer: Schema, path: str, where: str) -> None:
        """Check that data written with ``writer`` can be read with ``reader``."""
        if isinstance(reader, NamedSchema):
            path = self._paths.get(id(reader), path)
        key = (id(reader), id(writer))
        if key in self._seen:
            return  # already checked (or being checked: a recursive type)
        self._seen.add(key)
        if isinstance(writer, UnionSchema):
            self._writer_union(reader, writer, path, where)
        elif isinstance(reader, UnionSchema):
            self._reader_union(reader, writer, path, where)
        elif reader.type != writer.type:
            self._promotion(reader, writer, path, where)
        elif isinstance(reader, RecordSchema):
            self._name(reader, writer, path, where)
            self._record(reader, writer, path, where)  # type: ignore[arg-type]
        elif isinstance(reader, EnumSchema):
            self._name(reader, writer, path, where)
            self._enum(reader, writer, path, where)  # type: ignore[arg-type]
        elif isinstance(reader, FixedSchema):
            self._name(reader, writer, path, where)
            self._fixed(reader, writer, path, where)  # type: ignore[arg-type]
        elif isinstance(reader, ArraySchema):
            self.visit(reader.items, writer.items, f"{path}/items", f"{where}[]")  # type: ignore[attr-defined]
        elif isinstance(reader, MapSchema):
            self.visit(reader.values, writer.values, f"{path}/values", f"{where}{{}}")  # type: ignore[attr-defined]
        else:
            self._logical(reader, writer, path, where)

    # unions ------------------------------------------------------------------------------

    def _writer_union(self, reader: Schema, writer: UnionSchema, path: str, where: str) -> None:
        for i, branch in enumerate(writer.schemas):
            if isinstance(reader, UnionSchema):
                self._reader_union(reader, branch, path, where, writer_branch=i)
            elif shallow_match(reader, branch):
                self.visit(reader, branch, path, where)
            else:
                self.add(
                    "type_mismatch",
                    "error",
                    path,
                    f"{at(where)}: the writer's union may hold {describe(branch)} (branch {i}), "
                    f"which cannot be read as {describe(reader)}",
                    f"make the reader type a union that includes {describe(branch)}, {MIGRATE}",
                )

    def _reader_union(
        self,
        reader: UnionSchema,
        writer: Schema,
        path: str,
        where: str,
        writer_branch: int | None = None,
    ) -> None:
        for j, branch in enumerate(reader.schemas):
            if shallow_match(branch, writer):
                self.visit(branch, writer, f"{path}/{j}", where)
                return
        origin = "" if writer_branch is None else f" (writer union branch {writer_branch})"
        self.add(
            "missing_union_branch",
            "error",
            path,
            f"{at(where)}: the writer wrote {describe(writer)}{origin} but the reader's "
            f"{describe(reader)} has no branch that can read it",
            f"add {describe(writer)} to the reader's union, {MIGRATE}",
        )

    # primitives, promotions, logical types ----------------------------------------------

    def _promotion(self, reader: Schema, writer: Schema, path: str, where: str) -> None:
        if reader.type not in PROMOTIONS.get(writer.type, set()):
            self.add(
                "type_mismatch",
                "error",
                path,
                f"{at(where)}: the writer wrote {describe(writer)}, which Avro cannot read as "
                f"{describe(reader)}",
                f"keep the type {writer.type} (allowed promotions: int->long/float/double, "
                f"long->float/double, float->double, string<->bytes), {MIGRATE}",
            )
            return
        loss = LOSSY.get((writer.type, reader.type))
        if loss:
            self.add(
                "lossy_promotion",
                "warning",
                path,
                f"{at(where)}: {writer.type} is promoted to {reader.type}; {loss}",
                f"use a wider type (e.g. long or double), or keep {writer.type}",
            )
        self._logical(reader, writer, path, where)

    def _logical(self, reader: Schema, writer: Schema, path: str, where: str) -> None:
        rl, wl = prop(reader, "logicalType"), prop(writer, "logicalType")
        if rl == "decimal":
            self._decimal_params(reader, path, where)
        if rl == wl:
            if rl == "decimal":
                self._decimal(reader, writer, path, where)
            return
        if rl is None or wl is None:
            # A warning, not an error: the stored bytes are read unchanged, only the value's
            # in-memory representation changes (e.g. int <-> datetime); flowship's state codec
            # converts it to the reader's representation.
            change = f"adds logical type {rl}" if wl is None else f"drops logical type {wl}"
            self.add(
                "logical_type_changed",
                "warning",
                path,
                f"{at(where)}: the reader {change} on {reader.type}; stored values keep their "
                "numbers/bytes but code will see a different Python type",
                "check that code reading this field expects the new representation",
            )
            return
        w_unit, r_unit = TIME_UNITS.get(wl), TIME_UNITS.get(rl)
        same_family = w_unit and r_unit and w_unit[0] == r_unit[0]
        kind = "logical_type_unit" if same_family else "logical_type_mismatch"
        self.add(
            kind,
            "error",
            path,
            f"{at(where)}: the writer stored {wl} but the reader reads {rl}; stored values "
            "would be misread" + (" (units differ)" if same_family else ""),
            f"keep {wl}, {MIGRATE} that converts the values",
        )

    def _decimal_params(self, reader: Schema, path: str, where: str) -> None:
        precision, scale = prop(reader, "precision"), prop(reader, "scale", 0)
        ok = isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision
        if ok and isinstance(reader, FixedSchema):
            ok = precision <= int((8 * reader.size - 1) * 0.30102999566398120)  # log10(2)
        if not ok:
            self.add(
                "invalid_schema",
                "error",
                path,
                f"{at(where)}: decimal(precision={precision}, scale={scale}) is not valid here, so "
                "Avro ignores the logical type and reads raw bytes",
                "use 1 <= precision (fitting the fixed size) and 0 <= scale <= precision",
            )

    def _decimal(self, reader: Schema, writer: Schema, path: str, where: str) -> None:
        r_scale, w_scale = prop(reader, "scale", 0), prop(writer, "scale", 0)
        r_prec, w_prec = prop(reader, "precision", 0), prop(writer, "precision", 0)
        if r_scale != w_scale:
            one = Decimal(1).quantize(Decimal(1).scaleb(-w_scale))
            self.add(
                "decimal_scale",
                "error",
                path,
                f"{at(where)}: decimal scale changes from {w_scale} to {r_scale}; stored unscaled "
                f"integers would be read with the wrong scale ({one} would read as "
                f"{Decimal(10**w_scale).scaleb(-r_scale)})",
                f"keep scale {w_scale}, {MIGRATE}",
            )
        if r_prec < w_prec:
            self.add(
                "decimal_precision",
                "error",
                path,
                f"{at(where)}: decimal precision shrinks from {w_prec} to {r_prec}; stored values "
                "may not fit",
                f"use precision >= {w_prec}, {MIGRATE}",
            )

    # named types -------------------------------------------------------------------------

    def _name(self, reader: NamedSchema, writer: Schema, path: str, where: str) -> None:
        assert isinstance(writer, NamedSchema)
        if not names_match(reader, writer):
            self.add(
                "name_mismatch",
                "error",
                f"{path}/name",
                f"{at(where)}: the writer's {writer.type} is named {writer.fullname} but the "
                f"reader's is {reader.fullname}",
                f'keep the name, or add "aliases": ["{writer.fullname}"] to {reader.fullname}',
            )

    def _fixed(self, reader: FixedSchema, writer: FixedSchema, path: str, where: str) -> None:
        if reader.size != writer.size:
            self.add(
                "fixed_size",
                "error",
                f"{path}/size",
                f"{at(where)}: fixed {reader.fullname} changes size from {writer.size} to "
                f"{reader.size} bytes",
                f"keep size {writer.size}, {MIGRATE}",
            )
        self._logical(reader, writer, path, where)

    def _enum(self, reader: EnumSchema, writer: EnumSchema, path: str, where: str) -> None:
        lost = [s for s in writer.symbols if s not in reader.symbols]
        if not lost:
            return
        default = prop(reader, "default")
        if default is not None and default in reader.symbols:
            self.add(
                "enum_symbol_defaulted",
                "warning",
                f"{path}/symbols",
                f"{at(where)}: enum {reader.fullname} no longer has {lost}; stored values with "
                f"those symbols will read as the enum default {default!r}",
                "keep the symbols if the distinction matters",
            )
            return
        self.add(
            "missing_enum_symbol",
            "error",
            f"{path}/symbols",
            f"{at(where)}: enum {reader.fullname} lacks symbols {lost} that the writer may have "
            "stored",
            f'keep the symbols, or give the enum a "default" symbol, {MIGRATE}',
        )

    def _record(self, reader: RecordSchema, writer: RecordSchema, path: str, where: str) -> None:
        prefix = f"{where}." if where else ""
        used: set[str] = set()
        added: list[tuple[int, Field]] = []
        for i, field in enumerate(reader.fields):
            source = writer_field(writer, field)
            if source is None:
                added.append((i, field))
                continue
            used.add(source.name)
            self.visit(field.type, source.type, f"{path}/fields/{i}/type", f"{prefix}{field.name}")
        removed = [f for f in writer.fields if f.name not in used]
        for i, field in added:
            self._added_field(reader, field, removed, f"{path}/fields/{i}", f"{prefix}{field.name}")

    def _added_field(
        self, reader: RecordSchema, field: Field, removed: list[Field], path: str, where: str
    ) -> None:
        # avro's checker (and Java's) accepts a missing field whose *enum type* has a default;
        # per the spec an enum default only replaces unknown symbols, the field still needs one.
        olds = [f.name for f in removed if _readable(field.type, f.type)]
        alias = f'"aliases": ["{olds[0]}"]' if olds else ""
        if not field.has_default:
            hint = "add a default to the field"
            if alias:
                hint += f", or if it was renamed add {alias}"
            self.add(
                "missing_default",
                "error",
                path,
                f"{at(where)}: new in record {reader.fullname} and has no default, so values "
                "stored without it cannot be read",
                f"{hint}, {MIGRATE}",
            )
        elif olds:
            self.add(
                "suspected_rename",
                "warning",
                path,
                f"{at(where)}: new in record {reader.fullname} (it will read its default) while "
                f"field(s) {olds} disappeared (their values will be dropped): is it a rename?",
                f"if {field.name!r} is {olds[0]!r} renamed, add {alias} to field {field.name!r}",
            )


def _readable(reader: Schema, writer: Schema) -> bool:
    walker = Walker({})
    walker.visit(reader, writer, "", "")
    return next(walker.errors(), None) is None
