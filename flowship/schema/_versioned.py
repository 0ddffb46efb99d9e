"""Versioned Avro record schemas for operator state, declared in code: :class:`StateSchema`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import fastavro

from flowship.errors import SchemaError
from flowship.schema._avro import parse_schema
from flowship.schema._compat import CompatibilityReport, check_compatibility
from flowship.schema._fingerprint import canonical_form, fingerprint_of_canonical
from flowship.schema._load import load_json, parse_avro, schema_file

Migration = Callable[[Any], Any]


@dataclass(frozen=True)
class _Version:
    number: int
    schema: dict[str, Any]  # the JSON as declared (pydantic models already converted)
    parsed: dict[str, Any]  # fastavro-parsed, for the codec
    fingerprint: int


class StateSchema:
    """A state value's Avro record schema with its version history.

    ``versions`` maps 1, 2, ... N to a schema (dict, JSON text, ``.avsc`` path or pydantic model
    class); ``migrations[N]`` is ``fn(value_read_as_version_N_minus_1) -> value_for_version_N``
    for a step Avro schema resolution cannot make. Everything is checked here, at import time;
    mistakes raise :class:`~flowship.errors.SchemaError` with a hint.
    """

    def __init__(
        self,
        name: str,
        versions: Mapping[int, Any],
        migrations: Mapping[int, Migration] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            msg = f"state schema name must be a non-empty string, got {name!r}"
            raise SchemaError(msg)
        self.name = name
        self._versions = self._load_versions(versions)
        self.migrations: dict[int, Migration] = self._check_migrations(dict(migrations or {}))
        self.steps: dict[int, CompatibilityReport] = self._check_steps()
        self._by_fingerprint = self._index_fingerprints()

    @property
    def current(self) -> int:
        """The latest version number: values are always written in it."""
        return len(self._versions)

    def schema(self, version: int | None = None) -> dict[str, Any]:
        """The declared Avro schema (JSON data) of ``version`` (default: current)."""
        return self._version(version).schema

    def parsed(self, version: int | None = None) -> dict[str, Any]:
        """The fastavro-parsed schema of ``version`` (default: current)."""
        return self._version(version).parsed

    def fingerprint(self, version: int | None = None) -> int:
        """CRC-64-AVRO fingerprint of ``version`` (default: current), unsigned."""
        return self._version(version).fingerprint

    def version_of(self, fingerprint: int) -> int | None:
        """The version with this fingerprint (the newest if several share it), else None."""
        return self._by_fingerprint.get(fingerprint)

    def describe(self) -> dict[str, Any]:
        """A JSON-serializable summary: versions, schemas, fingerprints, migrations, warnings."""
        return {
            "name": self.name,
            "current": self.current,
            "versions": [
                {
                    "version": v.number,
                    "fingerprint": f"{v.fingerprint:016x}",
                    "schema": v.schema,
                    "migration": v.number in self.migrations,
                    "warnings": [str(p) for p in self.steps[v.number].warnings]
                    if v.number in self.steps
                    else [],
                }
                for v in self._versions
            ],
            "migrations": sorted(self.migrations),
        }

    def __repr__(self) -> str:
        return f"StateSchema({self.name!r}, current={self.current})"

    # validation --------------------------------------------------------------------------

    def _version(self, version: int | None) -> _Version:
        number = self.current if version is None else version
        if not isinstance(number, int) or not 1 <= number <= self.current:
            msg = (
                f"state schema {self.name!r} has no version {version!r}; "
                f"versions are 1..{self.current}"
            )
            raise SchemaError(msg)
        return self._versions[number - 1]

    def _load_versions(self, versions: Mapping[int, Any]) -> list[_Version]:
        if not isinstance(versions, Mapping) or not versions:
            msg = (
                f"state schema {self.name!r}: versions must be a non-empty dict such as "
                "{1: schema_v1, 2: schema_v2}"
            )
            raise SchemaError(msg)
        bad = [k for k in versions if type(k) is not int]
        if bad:
            msg = f"state schema {self.name!r}: version numbers must be ints, got {bad!r}"
            raise SchemaError(msg)
        for expected in range(1, max(versions) + 1):
            if expected not in versions:
                msg = (
                    f"state schema {self.name!r}: version {expected} is missing (declared: "
                    f"{sorted(versions)}); versions must be consecutive from 1 -- keep old "
                    "versions declared, did you forget to renumber?"
                )
                raise SchemaError(msg)
        if min(versions) < 1:
            msg = f"state schema {self.name!r}: versions start at 1, got {min(versions)}"
            raise SchemaError(msg)
        return [self._load(n, versions[n]) for n in sorted(versions)]

    def _load(self, number: int, source: Any) -> _Version:
        where = f"state schema {self.name!r} version {number}"
        raw = _model_schema(source)
        if raw is None:
            raw = load_json(source, where=where)
            path = schema_file(source)
            if path is not None:
                where = f"{where} ({path})"
        parse_schema(raw, where=where)  # a record that fastavro accepts, or SchemaError
        assert isinstance(raw, dict)
        parse_avro(raw, where=where)  # avro is stricter (e.g. a record needs "fields")
        parsed = cast(dict[str, Any], fastavro.parse_schema(raw, _write_hint=False))
        return _Version(number, raw, parsed, fingerprint_of_canonical(canonical_form(raw)))

    def _check_migrations(self, migrations: dict[int, Migration]) -> dict[int, Migration]:
        for number, fn in migrations.items():
            if type(number) is not int or not 2 <= number <= self.current:
                msg = (
                    f"state schema {self.name!r}: migrations[{number!r}] is not a step; "
                    f"migrations[N] converts version N-1 to N, for N in 2..{self.current}"
                )
                raise SchemaError(msg)
            if not callable(fn):
                msg = (
                    f"state schema {self.name!r}: migrations[{number}] must be a function "
                    f"old_value -> new_value, got {fn!r}"
                )
                raise SchemaError(msg)
        return migrations

    def _check_steps(self) -> dict[int, CompatibilityReport]:
        steps = {}
        for old, new in zip(self._versions, self._versions[1:], strict=False):
            report = check_compatibility(old.schema, new.schema)
            if not report.compatible and new.number not in self.migrations:
                problems = "\n".join(f"  - {p}" for p in report.errors)
                msg = (
                    f"state schema {self.name!r}: values stored with version {old.number} "
                    f"cannot be read as version {new.number}:\n{problems}\n"
                    f"declare migrations={{{new.number}: fn}} or make the change compatible"
                )
                raise SchemaError(msg)
            steps[new.number] = report
        return steps

    def _index_fingerprints(self) -> dict[int, int]:
        index: dict[int, int] = {}
        for version in self._versions:
            older = index.get(version.fingerprint)
            if older is not None:
                self._check_same_fingerprint(older, version.number)
            index[version.fingerprint] = version.number
        return index

    def _check_same_fingerprint(self, older: int, newer: int) -> None:
        # Stored values carry only the fingerprint, which ignores defaults, docs, aliases and
        # logical types; such values are decoded as the newest of the versions sharing it.
        migrated = [n for n in self.migrations if older < n <= newer]
        direct = check_compatibility(self.schema(older), self.schema(newer))
        if migrated or not direct.compatible:
            msg = (
                f"state schema {self.name!r}: versions {older} and {newer} have the same "
                "fingerprint (the canonical form ignores defaults, aliases and logical "
                "types), so stored values cannot tell them apart, yet they need different "
                f"handling (migrations at {migrated or 'none'}); change the field layout, "
                "e.g. rename a field with an alias"
            )
            raise SchemaError(msg)


def _model_schema(source: Any) -> dict[str, Any] | None:
    """The Avro schema of ``source`` if it is a pydantic model class, else None.

    pydantic is imported only if the job imported it: no object can be a model class before.
    """
    if "pydantic" not in sys.modules:
        return None
    from flowship.schema._pydantic import is_model_class, model_to_avro

    return model_to_avro(source) if is_model_class(source) else None
