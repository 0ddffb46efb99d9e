"""Can data written with one Avro schema be read with another? :func:`check_compatibility`.

``writer`` is the schema stored data was written with, ``reader`` the new code's schema. The
answer is a :class:`CompatibilityReport` whose problems carry a stable ``kind``, a severity, a JSON
pointer into the *reader* schema, a message (what and where) and a hint (how to fix).

Problem kinds (stable; ``E`` = error, makes ``compatible`` False, ``W`` = warning):

=========================  ==  ===========================================================
``type_mismatch``          E   types cannot be resolved (e.g. string -> int, a writer union
                               branch the non-union reader cannot read)
``missing_default``        E   a field new in the reader has no default
``missing_enum_symbol``    E   the writer may store enum symbols the reader lacks (no default)
``fixed_size``             E   a fixed type changed size
``name_mismatch``          E   a record/enum/fixed was renamed without an alias
``missing_union_branch``   E   the reader union has no branch for a type the writer wrote
``decimal_scale``          E   decimal scale changed (values would be misread)
``decimal_precision``      E   decimal precision shrank
``logical_type_unit``      E   time/timestamp unit changed (millis <-> micros <-> nanos)
``logical_type_mismatch``  E   a different logical type (e.g. timestamp <-> local-timestamp)
``invalid_schema``         E   the reader's decimal lacks a valid precision/scale, so Avro
                               would ignore the logical type (schemas that do not parse at
                               all raise ``SchemaError`` instead)
``logical_type_changed``   W   a logical type added or removed on the same physical type:
                               the stored bytes read fine, only the Python type changes
``lossy_promotion``        W   int->float, long->float/double (precision), bytes->string
                               (invalid UTF-8 fails)
``enum_symbol_defaulted``  W   removed enum symbols will read as the enum's default
``suspected_rename``       W   a field was removed and a compatible one added with a default
=========================  ==  ===========================================================

The rules follow the Avro specification ("Schema Resolution"). The verdict is cross-checked with
``avro.compatibility.ReaderWriterCompatibilityChecker`` (the port of Java's checker): should it
find an incompatibility the rules did not, its findings are translated into problems too, so
nothing it knows is lost. Where avro's checker is wrong per the spec, the rules (and the input
given to it) are corrected, see :class:`_AvroChecker` and :func:`_qualify_aliases`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    incompatible,
    lookup_writer_field,
    merge,
)

from flowship.schema._compat_rules import Walker, definition_paths
from flowship.schema._load import load_json, parse_avro

Severity = Literal["error", "warning"]

_AVRO_KINDS = {
    SchemaIncompatibilityType.name_mismatch: "name_mismatch",
    SchemaIncompatibilityType.fixed_size_mismatch: "fixed_size",
    SchemaIncompatibilityType.missing_enum_symbols: "missing_enum_symbol",
    SchemaIncompatibilityType.reader_field_missing_default_value: "missing_default",
    SchemaIncompatibilityType.type_mismatch: "type_mismatch",
    SchemaIncompatibilityType.missing_union_branch: "missing_union_branch",
}


@dataclass(frozen=True)
class Problem:
    """One reason data written with the writer schema may not read well with the reader."""

    kind: str
    severity: Severity
    path: str
    message: str
    hint: str

    def __str__(self) -> str:
        where = self.path or "(root)"
        return f"{self.severity} {self.kind} at {where}: {self.message} ({self.hint})"


@dataclass(frozen=True)
class CompatibilityReport:
    """The outcome of :func:`check_compatibility`: ``compatible`` is False iff any error."""

    compatible: bool
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems that make the schemas incompatible."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Problems that still allow reading, but may lose or change information."""
        return tuple(p for p in self.problems if p.severity == "warning")

    def __str__(self) -> str:
        verdict = "compatible" if self.compatible else "INCOMPATIBLE"
        head = f"{verdict} ({len(self.errors)} errors, {len(self.warnings)} warnings)"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def check_compatibility(writer: Any, reader: Any) -> CompatibilityReport:
    """Check that data written with ``writer`` can be read with ``reader``.

    Both are any Avro schema given as a dict, JSON text (or ``.avsc`` path). Raises
    :class:`~flowship.errors.SchemaError` when either does not parse.
    """
    writer_raw = load_json(writer, where="writer schema")
    reader_raw = load_json(reader, where="reader schema")
    writer_parsed = parse_avro(writer_raw, where="writer schema")
    reader_parsed = parse_avro(reader_raw, where="reader schema")

    walker = Walker(definition_paths(reader_raw, reader_parsed))
    walker.visit(reader_parsed, writer_parsed, "", "")
    problems = [
        Problem(f.kind, f.severity, f.path, f.message, f.hint)  # type: ignore[arg-type]
        for f in walker.found
    ]
    if not any(p.severity == "error" for p in problems):
        problems += _avro_problems(writer_raw, reader_raw)
    return CompatibilityReport(
        compatible=not any(p.severity == "error" for p in problems),
        problems=tuple(problems),
    )


def avro_verdict(writer_raw: Any, reader_raw: Any) -> SchemaCompatibilityResult:
    """Run avro's checker (with flowship's fixes) on JSON schema data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IgnoredLogicalType: logical types are checked apart
        reader = avro.schema.parse(json.dumps(_qualify_aliases(reader_raw)))
        writer = avro.schema.parse(json.dumps(writer_raw))
    return _AvroChecker().get_compatibility(reader, writer)


def _avro_problems(writer_raw: Any, reader_raw: Any) -> list[Problem]:
    result = avro_verdict(writer_raw, reader_raw)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    kinds = sorted({_AVRO_KINDS[k] for k in result.incompatibilities})
    return [
        Problem(
            kind,
            "error",
            sorted(result.locations)[0],
            f"avro's checker reports {kind}: {'; '.join(sorted(result.messages))} "
            f"(at {', '.join(sorted(result.locations))})",
            "make the change compatible, or write a migrate function for this version",
        )
        for kind in kinds
    ]


def _qualify_aliases(raw: Any, namespace: str | None = None) -> Any:
    """Copy of a schema whose named-type aliases are full names.

    Fix for avro's checker: it compares the writer's *full* name with the reader's aliases as
    written, so a relative alias (``"aliases": ["Old"]`` inside namespace ``a.b``) never matched
    ``a.b.Old``. The spec says relative aliases take the namespace of the aliased type.
    """
    if isinstance(raw, list):
        return [_qualify_aliases(r, namespace) for r in raw]
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if raw.get("type") in ("record", "error", "enum", "fixed"):
        name = str(raw.get("name", ""))
        space = name.rpartition(".")[0] if "." in name else raw.get("namespace", namespace)
        if raw.get("aliases"):
            out["aliases"] = [
                a if "." in a or not space else f"{space}.{a}" for a in raw["aliases"]
            ]
        namespace = space
    if isinstance(raw.get("fields"), list):
        out["fields"] = [
            dict(f, type=_qualify_aliases(f.get("type"), namespace)) for f in raw["fields"]
        ]
    for key in ("items", "values", "type"):
        if isinstance(raw.get(key), dict | list):
            out[key] = _qualify_aliases(raw[key], namespace)
    return out


class _AvroChecker(ReaderWriterCompatibilityChecker):
    """avro's checker with one fix.

    avro (like Java's checker) accepts a reader field that is missing from the writer and has no
    default when the field's *enum type* declares a default, and then compares that enum with the
    whole writer record (reporting ``type_mismatch``). Per the spec an enum default only replaces
    unknown symbols; a new field always needs its own default.
    """

    def check_reader_writer_record_fields(
        self, reader: Any, writer: Any, location: list[str]
    ) -> SchemaCompatibilityResult:
        result = SchemaCompatibilityResult(SchemaCompatibilityType.compatible)
        for i, field in enumerate(reader.fields):
            source = lookup_writer_field(writer_schema=writer, reader_field=field)
            if source is not None:
                sub = self.get_compatibility(
                    field.type, source.type, "type", [*location, "fields", str(i)]
                )
            elif not field.has_default:
                sub = incompatible(
                    SchemaIncompatibilityType.reader_field_missing_default_value,
                    field.name,
                    [*location, "fields", str(i)],
                )
            else:
                continue
            result = merge(result, sub)
        return result
