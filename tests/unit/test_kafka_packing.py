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


_CLICK = {
    "type": "record",
    "name": "Click",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_keyed_records_cross_key_by_as_avro_bytes_and_arrive_as_equal_records() -> None:
    import pickle
    from datetime import UTC, datetime

    from pyflink.common import Row

    from flowship.kafka import KafkaSource, Record
    from flowship.kafka._flink import DecodeAvro, KafkaContext
    from flowship.kafka._record import _WIRE_CODECS
    from flowship.schema import AvroCodec

    source = KafkaSource(uid="clicks-source", topic="clicks", schema=_CLICK)
    ctx = KafkaContext("127.0.0.1:9", "job", "1")
    click = {"user_id": "u1", "ts": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)}
    raw = AvroCodec(_CLICK).encode(click)
    packed = _source_bytes(2, 42, 1_700_000_000_123, b"u1", raw)
    plain = DecodeAvro(source, ctx, None)
    keyed = DecodeAvro(source, ctx, None, key_selector=lambda r: r.value["user_id"])
    plain.open(None)
    keyed.open(None)
    (record,) = plain.process_element(packed, None)  # type: ignore[arg-type]
    (row,) = keyed.process_element(packed, None)  # type: ignore[arg-type]
    assert isinstance(row, Row) and row[0] == "u1"

    data = pickle.dumps(row[1])  # what PyFlink does to the keyed stream's element
    assert raw in data and b"datetime" not in data  # the Kafka bytes, not the decoded value
    _WIRE_CODECS.clear()  # a process that has not seen this schema yet
    arrived = pickle.loads(data)
    assert type(arrived) is Record and arrived == record
    assert arrived.value == click and arrived.value["ts"].tzinfo is not None
    assert arrived.provenance == "clicks/2/42" and arrived.key == b"u1"
    assert pickle.loads(data) == record  # the cached codec decodes the same
