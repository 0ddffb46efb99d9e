"""PyFlink wiring of flowship's Kafka sources and sinks (imports PyFlink; used at build time).

Source: the Flink Kafka connector with flowship's ``ProvenanceDeserializationSchema`` (Java),
which hands Python a row (topic, partition, offset, timestamp, key, value); a Python
``ProcessFunction`` decodes the Avro value into a :class:`Record`, or sends the raw record to the
dead-letter side output. Sinks: a Python map encodes values into rows (topic, key, value,
headers) that flowship's ``HeaderRowSerializationSchema`` writes with an exactly-once KafkaSink.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.datastream import (
    DataStream,
    MapFunction,
    OutputTag,
    ProcessFunction,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.kafka import KafkaSink as _PyKafkaSink
from pyflink.datastream.connectors.kafka import KafkaSource as _PyKafkaSource
from pyflink.java_gateway import get_gateway
from pyflink.util.java_utils import load_java_class

from flowship.errors import PayloadError
from flowship.kafka import _headers as H
from flowship.kafka._declare import KafkaSink, KafkaSource
from flowship.kafka._record import Record
from flowship.schema import AvroCodec

SINK_ROW = Types.ROW_NAMED(
    ["topic", "key", "value", "headers"],
    [
        Types.STRING(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.STRING(),
    ],
)

# Kafka's broker default transaction.max.timeout.ms is 15 min; the connector's default producer
# transaction timeout (1 h) would be refused, so stay below it.
_TXN_TIMEOUT_MS = "600000"


@dataclass(frozen=True)
class KafkaContext:
    """What the wiring needs from the job: where Kafka is and who is writing."""

    bootstrap: str
    job: str
    version: str
    bounded: bool = False


def _bytes(value: Any) -> bytes | None:
    """PyFlink hands BYTES fields over as bytes (process mode) or bytearray/list (thread mode)."""
    if value is None or isinstance(value, bytes):
        return value
    return bytes(value)


class DecodeAvro(ProcessFunction):
    """Row(topic, partition, offset, timestamp, key, value) -> Record, or a dead-letter row."""

    def __init__(self, source: KafkaSource, ctx: KafkaContext, dlq_tag: OutputTag) -> None:
        self._schema = source.schema
        self._uid = source.uid
        self._dlq_topic = source.dead_letter_topic
        self._job = ctx.job
        self._version = ctx.version
        self._tag = dlq_tag
        self._codec: AvroCodec | None = None

    def open(self, runtime_context: Any) -> None:
        self._codec = AvroCodec(self._schema, where=f"KafkaSource {self._uid!r} schema")

    def process_element(self, row: Row, ctx: ProcessFunction.Context) -> Iterator[Any]:
        codec = self._codec
        assert codec is not None  # set in open()
        topic, partition, offset, timestamp, key, value = row
        key = _bytes(key)
        value = _bytes(value)
        try:
            decoded = codec.decode(value)  # type: ignore[arg-type]
        except PayloadError as exc:
            headers = H.encode_headers(
                [
                    (H.ERROR, str(exc)),
                    (H.ERROR_TYPE, type(exc.__cause__ or exc).__name__),
                    (H.SOURCE_UID, self._uid),
                    (H.SOURCE_TOPIC, topic),
                    (H.SOURCE_PARTITION, str(partition)),
                    (H.SOURCE_OFFSET, str(offset)),
                    (H.SOURCE_TIMESTAMP, str(timestamp)),
                    (H.JOB, self._job),
                    (H.VERSION, self._version),
                ]
            )
            yield self._tag, Row(self._dlq_topic, key, value if value is not None else b"", headers)
            return
        yield Record(decoded, key, topic, partition, offset, timestamp)


class EncodeAvro(MapFunction):
    """dict | Record -> Row(topic, key, value, headers) for ``HeaderRowSerializationSchema``."""

    def __init__(self, sink: KafkaSink, ctx: KafkaContext) -> None:
        self._schema = sink.schema
        self._uid = sink.uid
        self._topic = sink.topic
        self._key = sink.key
        self._version = ctx.version
        self._codec: AvroCodec | None = None

    def open(self, runtime_context: Any) -> None:
        self._codec = AvroCodec(self._schema, where=f"KafkaSink {self._uid!r} schema")
        # the headers are the same for every record but the provenance: encode them once
        self._plain_headers = H.encode_headers([(H.VERSION, self._version)])
        self._source_prefix = H.encode_headers([(H.VERSION, self._version), (H.SOURCE, "")])

    def map(self, element: Any) -> Row:
        codec = self._codec
        assert codec is not None  # set in open()
        if isinstance(element, Record):
            # topic names cannot contain NUL, so the provenance needs no escaping
            headers = f"{self._source_prefix}{element.topic}/{element.partition}/{element.offset}"
            value = element.value
        else:
            headers = self._plain_headers
            value = element
        try:
            payload = codec.encode(value)
        except PayloadError as exc:
            msg = f"KafkaSink {self._uid!r} (topic {self._topic!r}): {exc}; value was {value!r}"
            raise PayloadError(msg) from exc
        key_fn = self._key
        if key_fn is None:
            key = None
        elif isinstance(key_fn, str):
            key = value.get(key_fn)
        else:
            key = key_fn(value)
        if isinstance(key, str):
            key = key.encode()
        elif key is not None and not isinstance(key, bytes):
            key = str(key).encode()
        return Row(self._topic, key, payload, headers)


def _jvm() -> Any:
    return get_gateway().jvm


def _properties(props: dict[str, str]) -> Any:
    j_props = _jvm().java.util.Properties()
    for k, v in props.items():
        j_props.setProperty(k, v)
    return j_props


def _offsets(start_from: str) -> Any:
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetResetStrategy,
        KafkaOffsetsInitializer,
    )

    if start_from == "earliest":
        init = KafkaOffsetsInitializer.earliest()
    elif start_from == "latest":
        init = KafkaOffsetsInitializer.latest()
    else:
        init = KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    return init._j_initializer


def add_source(
    env: StreamExecutionEnvironment, source: KafkaSource, ctx: KafkaContext
) -> DataStream:
    """Add ``source`` (and its dead-letter sink) to ``env``; return the stream of Records."""
    builder = _jvm().org.apache.flink.connector.kafka.source.KafkaSource.builder()
    builder.setBootstrapServers(ctx.bootstrap)
    topics = _jvm().java.util.ArrayList()
    topics.add(source.topic)
    builder.setTopics(topics)
    builder.setGroupId(source.group_id or f"flowship.{ctx.job}.{source.uid}")
    builder.setStartingOffsets(_offsets(source.start_from))
    if ctx.bounded:
        builder.setBounded(_offsets("latest"))
    props = {
        "isolation.level": "read_committed",
        "partition.discovery.interval.ms": "10000",
        **source.properties,
    }
    builder.setProperties(_properties(props))
    deserializer = load_java_class("dev.flowship.kafka.ProvenanceDeserializationSchema")
    builder.setDeserializer(deserializer.newInstance())
    raw = env.from_source(
        _PyKafkaSource(builder.build()), WatermarkStrategy.no_watermarks(), f"kafka:{source.uid}"
    ).uid(source.uid)
    dlq_tag = OutputTag(f"{source.uid}.dead-letter", SINK_ROW)
    decoded = (
        raw.process(DecodeAvro(source, ctx, dlq_tag))
        .uid(f"{source.uid}.decode")
        .name(f"decode:{source.uid}")
    )
    dead = decoded.get_side_output(dlq_tag)
    dead.sink_to(_kafka_sink(ctx, f"{source.uid}.dlq")).uid(f"{source.uid}.dlq").name(
        f"dead-letter:{source.dead_letter_topic}"
    )
    return decoded


def _kafka_sink(ctx: KafkaContext, uid: str, extra: dict[str, str] | None = None) -> Any:
    jvm = _jvm()
    serializer = load_java_class("dev.flowship.kafka.HeaderRowSerializationSchema").newInstance()
    props = {"transaction.timeout.ms": _TXN_TIMEOUT_MS, **(extra or {})}
    builder = (
        jvm.org.apache.flink.connector.kafka.sink.KafkaSink.builder()
        .setBootstrapServers(ctx.bootstrap)
        .setRecordSerializer(serializer)
        .setDeliveryGuarantee(jvm.org.apache.flink.connector.base.DeliveryGuarantee.EXACTLY_ONCE)
        .setTransactionalIdPrefix(f"flowship.{ctx.job}.{uid}")
        .setKafkaProducerConfig(_properties(props))
    )
    return _PyKafkaSink(builder.build())


def add_sink(stream: DataStream, sink: KafkaSink, ctx: KafkaContext) -> None:
    """Encode ``stream`` with ``sink``'s schema and write it exactly once to its topic."""
    rows = (
        stream.map(EncodeAvro(sink, ctx), output_type=SINK_ROW)
        .uid(f"{sink.uid}.encode")
        .name(f"encode:{sink.uid}")
    )
    rows.sink_to(_kafka_sink(ctx, sink.uid, dict(sink.properties))).uid(sink.uid).name(
        f"kafka:{sink.topic}"
    )
