"""What a Python operator receives from a flowship source: the value and where it came from."""

from __future__ import annotations

from typing import Any, NamedTuple


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
