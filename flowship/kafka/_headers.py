"""Kafka header names flowship writes, and their wire encoding to the JVM sink."""

from __future__ import annotations

from collections.abc import Iterable

SOURCE = "flowship.source"  # topic/partition/offset of the input record an output derives from
JOB = "flowship.job"
VERSION = "flowship.version"
ROUTE = "flowship.route"  # "side": the sink writes the record to its side topic
#: on every output of a version an automatic rollback restarted from the pre-upgrade savepoint:
#: the failed deployment whose outputs for the same input address it may replace
REPLACES = "flowship.replaces"
ERROR = "flowship.error"
ERROR_TYPE = "flowship.error.type"
SOURCE_UID = "flowship.source.uid"
SOURCE_TOPIC = "flowship.source.topic"
SOURCE_PARTITION = "flowship.source.partition"
SOURCE_OFFSET = "flowship.source.offset"
SOURCE_TIMESTAMP = "flowship.source.timestamp"

_SEP = "\x00"


def encode_headers(headers: Iterable[tuple[str, str]]) -> str:
    r"""Encode headers for ``PackedRecordSerializationSchema``: ``name\\0value\\0name\\0value``.

    NUL characters inside names or values are replaced by U+FFFD so the framing cannot break.
    """
    parts: list[str] = []
    for name, value in headers:
        parts.append(name.replace(_SEP, "\ufffd"))
        parts.append(value.replace(_SEP, "\ufffd"))
    return _SEP.join(parts)


def decode_headers(encoded: str) -> list[tuple[str, str]]:
    """Inverse of :func:`encode_headers` (used by tests and tools)."""
    if not encoded:
        return []
    parts = encoded.split(_SEP)
    return list(zip(parts[0::2], parts[1::2], strict=True))
