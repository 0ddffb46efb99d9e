"""What a Python operator receives from a flowship source: the value and where it came from."""

from __future__ import annotations

from typing import Any, NamedTuple

from flowship.schema import AvroCodec


class Record(NamedTuple):
    """One decoded Kafka record with its provenance.

    A NamedTuple, so it crosses between Python operators as cheaply as a tuple. ``value`` is the
    Avro-decoded payload (a dict); ``topic``/``partition``/``offset`` identify the input record
    exactly, which is what output diffs and canaries match on.
    """

    value: dict[str, Any]
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int

    @property
    def provenance(self) -> str:
        """``topic/partition/offset``: the input record's identity."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        # records cross key_by pickled; the default NamedTuple path goes through copyreg on
        # every record and costs about twice as much
        return (Record, tuple(self))

    def with_value(self, value: dict[str, Any]) -> Record:
        """A new record carrying ``value`` and this record's provenance (for sinks' headers)."""
        # tuple.__new__ directly: NamedTuple._replace costs about four times as much per record
        return tuple.__new__(Record, (value, *self[1:]))


class WireRecord:
    """A :class:`Record` on its way across ``key_by``: it pickles as its Avro bytes.

    Pickling the decoded value costs about twice as much as decoding it again, mostly for the
    aware ``datetime`` fastavro makes of ``timestamp-millis`` (its ``timezone`` is rebuilt through
    ``copyreg`` on every record). So the decoding operator of a source sends the Kafka value's
    bytes with the schema's JSON, and the receiving side decodes them into an equal Record. The
    schema travels with every record, so any process can decode it (a TaskManager that never ran
    the decoder, process mode); each process parses a schema once.

    The bytes are the value as read from Kafka: a key selector must not modify the record it is
    given (Flink requires key selectors to be pure anyway).
    """

    __slots__ = ("raw", "record", "schema_json")

    def __init__(self, record: Record, raw: bytes, schema_json: str) -> None:
        self.record = record
        self.raw = raw
        self.schema_json = schema_json

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        r = self.record
        return (
            record_from_wire,
            (self.schema_json, self.raw, r.key, r.topic, r.partition, r.offset, r.timestamp),
        )


#: Codecs for the schemas records arrived with, by schema JSON (a job has a handful).
_WIRE_CODECS: dict[str, AvroCodec] = {}


def record_from_wire(
    schema_json: str,
    raw: bytes,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
) -> Record:
    """The :class:`Record` a :class:`WireRecord` was (the decoder checked these bytes already)."""
    codec = _WIRE_CODECS.get(schema_json)
    if codec is None:
        codec = _WIRE_CODECS[schema_json] = AvroCodec(
            schema_json, where=f"schema of a record from topic {topic!r}"
        )
    return tuple.__new__(Record, (codec.decode(raw), key, topic, partition, offset, timestamp))
