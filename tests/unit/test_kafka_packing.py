"""The Python halves of the packed record layouts shared with flowship's Java (de)serializers."""

from __future__ import annotations

import struct
from datetime import UTC

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


def test_records_survive_pickling_exactly_and_utc_timestamps_travel_compactly() -> None:
    import pickle
    from datetime import date, datetime, timedelta, timezone

    from flowship.kafka import Record

    utc = datetime(2026, 1, 1, 0, 40, 5, 123000, tzinfo=UTC)
    other_zone = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    value = {
        "ts": utc,
        "naive": datetime(2026, 1, 1),
        "zoned": other_zone,
        "day": date(2026, 1, 1),
        "nested": {"ts": utc},
        "n": 1,
        "late": utc + timedelta(microseconds=7),
    }
    record = Record(value, b"k", "clicks", 3, 42, 1_700_000_000_000)
    data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    assert type(back) is Record and back == record
    assert back.value["ts"].tzinfo is UTC and back.value["late"].tzinfo is UTC
    assert back.value["zoned"].utcoffset() == timedelta(hours=2)
    assert record.value["ts"] is utc, "pickling must not change the record's own value"
    # top-level UTC datetimes travel as their pickle state, not through copyreg's timezone
    stamped = Record({"ts": utc, "id": "e1"}, None, "clicks", 0, 1, 2)
    compact = pickle.dumps(stamped)
    assert b"timezone" not in compact and pickle.loads(compact) == stamped
    plain = Record({"a": [1, 2]}, None, "t", 0, 0, 0)
    assert pickle.loads(pickle.dumps(plain)) == plain
    assert type(pickle.loads(pickle.dumps(plain))) is Record


def test_keyed_rows_are_the_rows_pyflink_builds() -> None:
    from pyflink.common import Row

    from flowship.kafka import Record
    from flowship.kafka._flink import _keyed_row

    record = Record({"a": 1}, b"k", "clicks", 3, 42, 1_700_000_000_000)
    fast, reference = _keyed_row("u1", record), Row("u1", record)
    assert type(fast) is Row and vars(fast) == vars(reference) and fast == reference
    assert fast.get_row_kind() == reference.get_row_kind() and fast[1] is record


def test_sink_records_carry_version_and_provenance_headers() -> None:
    from flowship.kafka import KafkaSink, Record
    from flowship.kafka._flink import EncodeAvro, KafkaContext
    from flowship.schema import AvroCodec

    schema = {"type": "record", "name": "Out", "fields": [{"name": "id", "type": "string"}]}
    sink = KafkaSink(uid="out", topic="out", schema=schema, key="id")
    encode = EncodeAvro(sink, KafkaContext("127.0.0.1:1", "job", "7"))
    encode.open(None)
    payload = AvroCodec(schema).encode({"id": "a"})
    for partition, offset in [(3, 42), (3, 43), (0, 2**40)]:
        out = encode.map(Record({"id": "a"}, None, "clicks", partition, offset, 0))
        headers = pack_headers([(H.VERSION, "7"), (H.SOURCE, f"clicks/{partition}/{offset}")])
        assert out == pack_sink_record(b"a", headers, payload)
    assert encode.map({"id": "a"}) == pack_sink_record(
        b"a", pack_headers([(H.VERSION, "7")]), payload
    )


def test_a_rollbacks_replay_names_the_failed_deployment_on_every_output() -> None:
    from flowship.kafka import KafkaSink, Record
    from flowship.kafka._flink import EncodeAvro, KafkaContext
    from flowship.schema import AvroCodec

    schema = {"type": "record", "name": "Out", "fields": [{"name": "id", "type": "string"}]}
    sink = KafkaSink(uid="out", topic="out", schema=schema, key="id")
    ctx = KafkaContext("127.0.0.1:1", "job", "1", replaces="20261130T052902Z-bb1cbfc6")
    encode = EncodeAvro(sink, ctx)
    encode.open(None)
    payload = AvroCodec(schema).encode({"id": "a"})
    replaces = (H.REPLACES, "20261130T052902Z-bb1cbfc6")
    out = encode.map(Record({"id": "a"}, None, "clicks", 3, 42, 0))
    headers = pack_headers([(H.VERSION, "1"), replaces, (H.SOURCE, "clicks/3/42")])
    assert out == pack_sink_record(b"a", headers, payload)
    timer = encode.map(Record({"id": "a"}, None, "", -1, -1, 0))  # no input record
    assert timer == pack_sink_record(b"a", pack_headers([(H.VERSION, "1"), replaces]), payload)
    assert encode.map({"id": "a"}) == timer
