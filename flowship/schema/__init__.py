"""Avro schemas: parsing, codecs and (later) versioned state schemas and compatibility checks.

Pure Python (fastavro + avro): importing this package never starts a JVM.
"""

from flowship.schema._avro import AvroCodec, parse_schema

__all__ = ["AvroCodec", "parse_schema"]
