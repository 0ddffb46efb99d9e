"""The one place state values are (de)serialized: :class:`StateCodec`.

A stored value is a 9-byte header -- format byte ``0x01``, then the writer schema's CRC-64-AVRO
fingerprint as 8 bytes little-endian (as in Avro single-object encoding) -- followed by the
value in Avro binary (schemaless). Values are always written in the current version; a value
written by an older version is resolved to the current one when read:

* runs of versions without a migration are resolved by Avro schema resolution, directly from the
  writer version to the furthest version Avro can reach in one step (checked at construction);
* at a version ``N`` with ``migrations[N]``, the value is read as version ``N-1`` and handed to
  the migrate function; top-level fields it leaves out that have a default get that default,
  and the result is re-encoded if more versions follow (or validated, at the current version).

Never pickle.
"""

from __future__ import annotations

import copy
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import fastavro
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import validate

from flowship.errors import StateError
from flowship.schema._compat import check_compatibility
from flowship.schema._resolve import Fixer, build_fixer, collect_names, default_value
from flowship.schema._versioned import StateSchema

FORMAT = 0x01
_ABSENT = object()
#: Avro types whose decoded Python value is immutable and of exactly one type.
_PLAIN = {
    "null": type(None),
    "boolean": bool,
    "int": int,
    "long": int,
    "double": float,
    "string": str,
    "bytes": bytes,
}
#: How many migrated values per codec are validated against the current schema on read.
VALIDATE_FIRST = 1000
_HEADER = struct.Struct("<BQ")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class _Step:
    """One step of a decode plan: read bytes (v_from -> v_to), migrate a value, or re-encode."""

    action: str  # "read" | "migrate" | "encode" | "validate"
    version: int  # the version the value has after the step
    writer: Any = None
    reader: Any = None
    fixer: Fixer | None = None
    migrate: Callable[[Any], Any] | None = None


class StateCodec:
    """Encode state values in the current version; decode any declared version's values."""

    def __init__(self, state_schema: StateSchema) -> None:
        self.state_schema = state_schema
        self._parsed: dict[int, dict[str, Any]] = {
            n: cast(dict[str, Any], fastavro.parse_schema(state_schema.schema(n)))
            for n in range(1, state_schema.current + 1)
        }
        self._current = self._parsed[state_schema.current]
        self._current_fp = state_schema.fingerprint()
        self._plain = _plain_fields(state_schema.schema(state_schema.current))
        self._header = _HEADER.pack(FORMAT, self._current_fp)
        self._compatible: dict[tuple[int, int], bool] = {}
        self._validated = 0
        self._defaulted: dict[int, list[tuple[str, Any, Any]]] = {}
        self._plans: dict[int, tuple[int, list[_Step]]] = {}
        for number in range(1, state_schema.current + 1):
            fp = state_schema.fingerprint(number)
            writer = state_schema.version_of(fp)
            assert writer is not None
            self._plans[fp] = (writer, self._plan(writer))

    def encode(self, value: Any, *, uid: str | None = None, key: Any = None) -> bytes:
        """Header + Avro binary of ``value`` in the current version."""
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self._current, value)
        except Exception as exc:  # ValueError, TypeError, KeyError, AttributeError ...
            msg = (
                f"{self._where(uid, None, key)}: the value does not fit version "
                f"{self.state_schema.current} of the state schema: {type(exc).__name__}: "
                f"{exc}; fix the value or declare a new schema version"
            )
            raise StateError(msg) from exc
        return buf.getvalue()

    def decode(
        self, data: bytes, *, uid: str | None = None, state: str | None = None, key: Any = None
    ) -> Any:
        """The value stored in ``data``, resolved to the current version."""
        if len(data) < HEADER_SIZE or data[0] != FORMAT:
            raise self._bad_header(data, uid, state, key)
        fp = _HEADER.unpack_from(data)[1]
        if fp == self._current_fp:  # the fast path: one dict lookup, one reader call
            buf = io.BytesIO(data)
            buf.seek(HEADER_SIZE)
            try:
                value = schemaless_reader(buf, self._current, None)
            except Exception as exc:
                raise self._error(
                    exc, fp, self.state_schema.current, "decode", uid, state, key
                ) from exc
            if buf.tell() != len(data):
                raise self._trailing(fp, len(data) - buf.tell(), uid, state, key)
            return value
        plan = self._plans.get(fp)
        if plan is None:
            known = ", ".join(
                f"v{n}={self.state_schema.fingerprint(n):016x}"
                for n in range(1, self.state_schema.current + 1)
            )
            msg = (
                f"{self._where(uid, state, key)}: stored value has writer schema fingerprint "
                f"{fp:016x}, which no declared version of state schema "
                f"{self.state_schema.name!r} has (known: {known}); keep every version that "
                "ever wrote state declared in StateSchema(versions=...)"
            )
            raise StateError(msg)
        return self._run(data, fp, plan, uid, state, key)

    def snapshot(self, value: Any) -> dict[str, Any] | None:
        """A copy of ``value`` equal to what decoding its encoding returns, or None.

        Only for a current schema of plain fields (null, boolean, int, long, double, string,
        bytes, or a union of null and one of those) and a value holding exactly those fields,
        each of exactly its Python type (an ``int`` in a ``double`` field would come back a
        ``float``): then a shallow copy is a decoded value, and the copy shares nothing mutable.
        State handles cache it, so reading a value they wrote needs no decoding.
        """
        plain = self._plain
        if plain is None or type(value) is not dict or len(value) != len(plain):
            return None
        snapshot: dict[str, Any] = {}  # in schema order, as decoded
        for name, types in plain:
            field = value.get(name, _ABSENT)
            if type(field) not in types:
                return None
            snapshot[name] = field
        return snapshot

    def decoded_is_plain(self) -> bool:
        """Whether decoded values of the current schema hold only immutable field values."""
        return self._plain is not None

    # decode plans ------------------------------------------------------------------------

    def _plan(self, writer: int) -> list[_Step]:
        current, migrations = self.state_schema.current, self.state_schema.migrations
        steps: list[_Step] = []
        version = writer
        while True:
            boundary = min((m for m in migrations if m > version), default=None)
            target = current if boundary is None else boundary - 1
            for i, (a, b) in enumerate(self._hops(version, target)):
                if i or (steps and steps[-1].action == "migrate"):
                    steps.append(_Step("encode", a, writer=self._parsed[a]))
                additive = None if a == b else self._added_defaults(a, b)
                if a == b:
                    steps.append(_Step("read", b, self._parsed[a]))
                elif additive is not None:
                    # only fields with defaults were added: read with the writer schema and add
                    # them, instead of a full Avro resolution per value
                    steps.append(_Step("read", b, self._parsed[a], None, additive))
                else:
                    fixer = build_fixer(self._parsed[a], self._parsed[b])
                    steps.append(_Step("read", b, self._parsed[a], self._parsed[b], fixer))
            if boundary is None:
                return steps
            steps.append(_Step("migrate", boundary, migrate=migrations[boundary]))
            version = boundary
            if version == current:
                steps.append(_Step("validate", current, writer=self._current))
                return steps

    def _added_defaults(self, a: int, b: int) -> Fixer | None:
        """A fixer adding ``b``'s new fields if ``a`` -> ``b`` only adds fields with defaults.

        Same record name, every field of ``a`` in ``b`` with an identical type, every other
        field of ``b`` with a default; anything else (removals, promotions, aliases, nested
        changes) goes through Avro resolution.
        """
        writer, reader = self.state_schema.schema(a), self.state_schema.schema(b)
        if writer.get("name") != reader.get("name") or writer.get("type") != "record":
            return None
        w_fields = {f["name"]: f for f in writer["fields"]}
        r_fields = {f["name"]: f for f in reader["fields"]}
        if not set(w_fields) <= set(r_fields):
            return None
        for name, field in w_fields.items():
            if field["type"] != r_fields[name]["type"]:
                return None
        added = [f for n, f in r_fields.items() if n not in w_fields]
        if not added or any("default" not in f for f in added):
            return None
        names = collect_names(self._parsed[b])
        defaults = [(f["name"], default_value(f["type"], f["default"], names)) for f in added]
        mutable = any(isinstance(v, (dict, list, bytearray)) for _, v in defaults)

        def add(value: Any) -> Any:
            for name, default in defaults:
                value[name] = copy.deepcopy(default) if mutable else default
            return value

        return add

    def _hops(self, start: int, target: int) -> list[tuple[int, int]]:
        """Greedy hops start -> target, each one a single Avro resolution."""
        hops = []
        a = start
        while True:
            b = next(b for b in range(target, a - 1, -1) if a == b or self._direct(a, b))
            hops.append((a, b))
            if b == target:
                return hops
            a = b

    def _direct(self, a: int, b: int) -> bool:
        if (a, b) not in self._compatible:
            report = check_compatibility(self.state_schema.schema(a), self.state_schema.schema(b))
            self._compatible[(a, b)] = report.compatible
        return self._compatible[(a, b)]

    def _run(
        self,
        data: bytes,
        fp: int,
        plan: tuple[int, list[_Step]],
        uid: str | None,
        state: str | None,
        key: Any,
    ) -> Any:
        version, steps = plan
        payload: bytes = data[HEADER_SIZE:]
        value: Any = None
        for n, step in enumerate(steps):
            try:
                if step.action == "read":
                    buf = io.BytesIO(payload)
                    value = schemaless_reader(buf, step.writer, step.reader)
                    if n == 0 and buf.tell() != len(payload):
                        raise self._trailing(fp, len(payload) - buf.tell(), uid, state, key)
                    value = step.fixer(value) if step.fixer else value
                elif step.action == "migrate":
                    assert step.migrate is not None
                    value = self._complete(step.migrate(value), step.version)
                elif step.action == "encode":
                    buf = io.BytesIO()
                    schemaless_writer(buf, step.writer, value)
                    payload = buf.getvalue()
                elif self._validated < VALIDATE_FIRST:
                    # migrate functions are deterministic code: checking their first results
                    # catches a wrong one early; every value written back is checked by encode
                    validate(value, step.writer, raise_errors=True)
                    self._validated += 1
            except StateError:
                raise
            except Exception as exc:
                action = "resolve" if step.action == "read" and n else step.action
                raise self._error(exc, fp, version, action, uid, state, key, step.version) from exc
        return value

    def _complete(self, value: Any, version: int) -> Any:
        """Fill top-level fields a migrate function left out that have a default."""
        if not isinstance(value, dict):
            return value
        defaulted = self._defaulted.get(version)
        if defaulted is None:
            schema = self._parsed[version]
            defaulted = self._defaulted[version] = [
                (f["name"], f["type"], f["default"]) for f in schema["fields"] if "default" in f
            ]
        for name, kind, default in defaulted:
            if name not in value:
                value[name] = default_value(kind, default, collect_names(self._parsed[version]))
        return value

    # errors ------------------------------------------------------------------------------

    def _where(self, uid: str | None, state: str | None, key: Any) -> str:
        return f"state {state or self.state_schema.name!r} of operator uid {uid!r}, key {key!r}"

    def _bad_header(self, data: bytes, uid: str | None, state: str | None, key: Any) -> StateError:
        found = f"format byte 0x{data[0]:02x}" if data else "no bytes"
        msg = (
            f"{self._where(uid, state, key)}: stored value has {found} and {len(data)} bytes; "
            f"flowship state starts with format byte 0x{FORMAT:02x} and an 8-byte schema "
            "fingerprint. Was it written by another serializer (e.g. pickle, or an older job "
            "without flowship)? Restore from a savepoint written by flowship, or drop this "
            "state explicitly"
        )
        return StateError(msg)

    def _trailing(
        self, fp: int, extra: int, uid: str | None, state: str | None, key: Any
    ) -> StateError:
        msg = (
            f"{self._where(uid, state, key)}: {extra} unexpected bytes after the value "
            f"(writer schema fingerprint {fp:016x}); the stored bytes are corrupt or the "
            "fingerprint names the wrong schema version"
        )
        return StateError(msg)

    def _error(
        self,
        exc: Exception,
        fp: int,
        version: int,
        action: str,
        uid: str | None,
        state: str | None,
        key: Any,
        step_version: int | None = None,
    ) -> StateError:
        where = self._where(uid, state, key)
        head = f"{where} (writer schema fingerprint {fp:016x}, version {version})"
        cause = f"{type(exc).__name__}: {exc}"
        if action == "migrate":
            text = (
                f"migrations[{step_version}] failed: {cause}; fix the migrate function "
                f"for version {step_version}"
            )
        elif action in ("encode", "validate"):
            text = (
                f"the value migrated to version {step_version} does not fit that schema: "
                f"{cause}; fix migrations[{step_version}] so it returns a valid value"
            )
        elif action == "resolve":
            text = (
                f"the value cannot be resolved to version {step_version}: {cause}; "
                "check the schema history and migrations"
            )
        else:
            text = (
                f"the stored bytes do not decode with version {version}: {cause}; they are "
                "truncated or corrupt -- restore from an earlier savepoint or drop the key"
            )
        return StateError(f"{head}: {text}")


def _plain_fields(schema: Any) -> tuple[tuple[str, tuple[type, ...]], ...] | None:
    """Each field's exact Python types, if ``schema`` is a record of plain fields only."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = []
    for field in schema.get("fields", []):
        kind = field["type"]
        branches = kind if isinstance(kind, list) else [kind]
        if len(branches) > 2 or (len(branches) == 2 and "null" not in branches):
            # a union of two non-null types can change a value's type: fastavro writes the
            # int 3 into ["double", "long"] as the double 3.0
            return None
        types = []
        for branch in branches:
            if isinstance(branch, dict) and set(branch) == {"type"}:
                branch = branch["type"]  # {"type": "long"} is "long"; logical types are not
            if not isinstance(branch, str) or branch not in _PLAIN:
                return None
            types.append(_PLAIN[branch])
        fields.append((str(field["name"]), tuple(types)))
    return tuple(fields)
