"""The example job hand-written in plain PyFlink: the baseline the benchmarks compare against.

Same connector (Flink Kafka SQL connector), same Avro decoding (fastavro), same session logic,
same output (Avro values keyed by user id, so that each user's outputs stay in order),
exactly-once Kafka sink, but PyFlink's own way: value-only byte deserializer, pickled
(``Types.PICKLED_BYTE_ARRAY``) keyed state, no provenance, no dead-letter topic.

PyFlink has no serialization schema that writes a key computed in Python: a hand-written job
needs a small Java one. This job uses flowship's ``PackedRecordSerializationSchema`` for that
(key and value packed in one byte array, no headers), the job's only use of flowship.

    python bench/baseline_job.py --kafka-bootstrap HOST:PORT --rest-port P --mode thread
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import fastavro
from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetsInitializer,
    KafkaSink,
    KafkaSource,
)
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.java_gateway import get_gateway
from pyflink.util.java_utils import load_java_class

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "click_sessions"
SESSION_GAP_MS = 30 * 60 * 1000
CLICK = fastavro.parse_schema(json.loads((EXAMPLE / "click.avsc").read_text()))
STATS = fastavro.parse_schema(json.loads((EXAMPLE / "session_stats.avsc").read_text()))
NO_HEADERS = struct.pack(">i", 0)


def decode(payload: bytes) -> dict[str, Any]:
    # a record schema reads as a dict (fastavro's return type is any Avro value)
    return cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(bytes(payload)), CLICK, None))


def encode(value: dict[str, Any]) -> bytes:
    """The output record keyed by user: int32 key length | key | int32 0 (no headers) | value."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, STATS, value)
    key = value["user_id"].encode()
    return b"".join((struct.pack(">i", len(key)), key, NO_HEADERS, buf.getvalue()))


class SessionStats(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(
            ValueStateDescriptor("session", Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(
        self, click: dict[str, Any], ctx: KeyedProcessFunction.Context
    ) -> Iterator[dict[str, Any]]:
        ts = click["ts"]
        ts_ms = ts if isinstance(ts, int) else int(ts.timestamp() * 1000)
        current = self.state.value()
        if current is None:
            session_clicks, total, start, sessions = 1, 1, ts_ms, 1
        else:
            session_clicks, total, start, last_ts, sessions = current
            total += 1
            if ts_ms - last_ts > SESSION_GAP_MS:
                session_clicks, start, sessions = 1, ts_ms, sessions + 1
            else:
                session_clicks += 1
        self.state.update((session_clicks, total, start, ts_ms, sessions))
        yield {
            "event_id": click["event_id"],
            "user_id": click["user_id"],
            "session_clicks": session_clicks,
            "total_clicks": total,
            "session_start": start,
            "sessions": sessions,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka-bootstrap", required=True)
    parser.add_argument("--rest-port", default="0")
    parser.add_argument("--mode", default="thread", choices=["thread", "process"])
    parser.add_argument("--parallelism", default="2")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from flowship._jars import find_jars

    jars = find_jars()
    config = Configuration()
    config.set_string("rest.port", args.rest_port)
    config.set_string("parallelism.default", args.parallelism)
    config.set_string("python.executable", sys.executable)
    config.set_string("python.pythonpath", ":".join(sys.path[1:]))
    config.set_string(
        "execution.checkpointing.dir", Path(args.state_dir, "checkpoints").resolve().as_uri()
    )
    config.set_string("execution.checkpointing.interval", "2 s")
    config.set_string("python.execution-mode", args.mode)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.add_jars(jars.connector.as_uri(), jars.provenance.as_uri())

    jvm = get_gateway().jvm
    shaded = jvm.org.apache.flink.kafka.shaded.org.apache.kafka.common.serialization
    # PyFlink has no bytes deserializer: hand-written jobs reach for the Java one through py4j
    deserializers = jvm.org.apache.flink.connector.kafka.source.reader.deserializer
    j_deser = deserializers.KafkaRecordDeserializationSchema.valueOnly(
        shaded.ByteArrayDeserializer().getClass()
    )
    j_builder = (
        jvm.org.apache.flink.connector.kafka.source.KafkaSource.builder()
        .setBootstrapServers(args.kafka_bootstrap)
        .setGroupId("baseline")
        .setStartingOffsets(KafkaOffsetsInitializer.earliest()._j_initializer)
        .setBounded(KafkaOffsetsInitializer.latest()._j_initializer)
        .setDeserializer(j_deser)
    )
    topics = jvm.java.util.ArrayList()
    topics.add("clicks")
    j_builder.setTopics(topics)
    props = jvm.java.util.Properties()
    props.setProperty("isolation.level", "read_committed")
    j_builder.setProperties(props)
    source = KafkaSource(j_builder.build())

    stream = env.from_source(source, WatermarkStrategy.no_watermarks(), "clicks").uid("clicks")
    stats = (
        stream.map(decode)
        .key_by(lambda c: c["user_id"], key_type=Types.STRING())
        .process(SessionStats())
        .uid("session-stats")
        .map(encode, output_type=Types.PRIMITIVE_ARRAY(Types.BYTE()))
    )

    j_ser = (
        load_java_class("dev.flowship.kafka.PackedRecordSerializationSchema")
        .newInstance()
        .withTopic("session-stats")
    )
    sink_props = jvm.java.util.Properties()
    sink_props.setProperty("transaction.timeout.ms", "600000")
    j_sink = (
        jvm.org.apache.flink.connector.kafka.sink.KafkaSink.builder()
        .setBootstrapServers(args.kafka_bootstrap)
        .setRecordSerializer(j_ser)
        .setDeliveryGuarantee(jvm.org.apache.flink.connector.base.DeliveryGuarantee.EXACTLY_ONCE)
        .setTransactionalIdPrefix("baseline")
        .setKafkaProducerConfig(sink_props)
        .build()
    )
    stats.sink_to(KafkaSink(j_sink)).uid("stats-sink")
    env.execute("baseline-click-sessions")


if __name__ == "__main__":
    main()
