"""Avro Parsing Canonical Form and its CRC-64-AVRO (Rabin) fingerprint.

The fingerprint is the one the Avro specification defines for single-object encoding. It is
returned as an *unsigned* 64-bit int (Java's ``SchemaNormalization.parsingFingerprint64`` returns
the same bits as a signed long); :func:`fingerprint_hex` prints that number as 16 hex digits.
On the wire (single-object encoding, flowship's state header) it is stored little-endian.

The canonical form drops docs, aliases, defaults and logical types, so two schemas that differ
only in those have the same fingerprint.
"""

from __future__ import annotations

from typing import Any

import fastavro.schema

from flowship.errors import SchemaError
from flowship.schema._load import load_json, parse_avro


def canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of an Avro schema (dict, list, JSON text or ``.avsc`` path)."""
    raw = load_json(schema)
    parse_avro(raw)  # a clear SchemaError for anything that is not valid Avro
    try:
        return str(fastavro.schema.to_parsing_canonical_form(raw))
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        msg = f"cannot compute the canonical form of the schema: {exc}"
        raise SchemaError(msg) from exc


def fingerprint_of_canonical(canonical: str) -> int:
    """CRC-64-AVRO fingerprint of a schema already in Parsing Canonical Form."""
    # fastavro returns the 8 fingerprint bytes little-endian, as hex
    return int.from_bytes(
        bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")), "little"
    )


def fingerprint(schema: Any) -> int:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's canonical form, unsigned 64-bit."""
    return fingerprint_of_canonical(canonical_form(schema))


def fingerprint_hex(schema: Any) -> str:
    """:func:`fingerprint` as 16 lowercase hex digits (most significant first)."""
    return f"{fingerprint(schema):016x}"
