"""The Python halves of the packed record layouts shared with flowship's Java (de)serializers."""

from __future__ import annotations

import struct

from flowship.kafka import _headers as H
from flowship.kafka._flink import pack_headers, pack_sink_record, unpack_source_record


def _source_bytes(
    partition: int, offset: int, ts: int, key: bytes | None, value: bytes | None
) -> bytes:
    # what ProvenanceDeserializationSchema writes (big-endian, -1 length for null)
    head = struct.pack(
        ">iqqii",
        partition,
        offset,
        ts,
        -1 if key is None else len(key),
        -1 if value is None else len(value),
    )
    return head + (key or b"") + (value or b"")


def test_source_record_round_trip() -> None:
    packed = _source_bytes(3, 2**40 + 7, 1_700_000_000_123, b"user-1", b"\x02\x04avro")
    assert unpack_source_record(packed) == (
        3,
        2**40 + 7,
        1_700_000_000_123,
        b"user-1",
        b"\x02\x04avro",
    )


def test_source_record_null_key_and_value_stay_distinct_from_empty() -> None:
    assert unpack_source_record(_source_bytes(0, 1, 2, None, None))[3:] == (None, None)
    assert unpack_source_record(_source_bytes(0, 1, 2, b"", b""))[3:] == (b"", b"")
    assert unpack_source_record(bytearray(_source_bytes(1, 1, 2, b"k", b"v")))[3:] == (b"k", b"v")


def test_sink_record_layout() -> None:
    headers = pack_headers([(H.VERSION, "2"), (H.SOURCE, "clicks/1/42")])
    packed = pack_sink_record(b"key", headers, b"payload")
    (key_len,) = struct.unpack_from(">i", packed)
    assert packed[4 : 4 + key_len] == b"key"
    at = 4 + key_len
    (headers_len,) = struct.unpack_from(">i", packed, at)
    text = packed[at + 4 : at + 4 + headers_len].decode()
    assert H.decode_headers(text) == [(H.VERSION, "2"), (H.SOURCE, "clicks/1/42")]
    assert packed[at + 4 + headers_len :] == b"payload"


def test_sink_record_without_key() -> None:
    packed = pack_sink_record(None, pack_headers([]), b"v")
    assert packed == struct.pack(">ii", -1, 0) + b"v"


def test_with_value_keeps_the_provenance_and_the_type() -> None:
    from flowship.kafka import Record

    record = Record({"a": 1}, b"k", "clicks", 3, 42, 1700000000000)
    out = record.with_value({"b": 2})
    assert type(out) is Record and out.value == {"b": 2} and record.value == {"a": 1}
    assert out[1:] == record[1:] and out.provenance == "clicks/3/42"
