"""Avro schemas: parsing, codecs, versioned state schemas, fingerprints and compatibility checks.

Pure Python (fastavro + avro): importing this package never starts a JVM.
"""

from typing import Any

from flowship.schema._avro import AvroCodec, parse_schema
from flowship.schema._compat import CompatibilityReport, Problem, check_compatibility
from flowship.schema._fingerprint import canonical_form, fingerprint, fingerprint_hex
from flowship.schema._state_codec import StateCodec, StateError
from flowship.schema._versioned import StateSchema

__all__ = [
    "AvroCodec",
    "CompatibilityReport",
    "Problem",
    "StateCodec",
    "StateError",
    "StateSchema",
    "canonical_form",
    "check_compatibility",
    "fingerprint",
    "fingerprint_hex",
    "model_to_avro",
    "parse_schema",
]


def __getattr__(name: str) -> Any:
    # pydantic loads on first use: job code that declares no model never pays for its import
    if name == "model_to_avro":
        from flowship.schema._pydantic import model_to_avro

        return model_to_avro
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
