"""Kafka helpers for tests, demos and benchmarks: topics, Avro producing, committed reading."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from flowship._kafka import admin_client, consumer, producer, serve_logs
from flowship.errors import PayloadError, ServiceError
from flowship.schema import AvroCodec
from flowship.schema._avro import SchemaLike

# librdkafka logs retries (broker restarting, coordinator loading) as warnings; these helpers
# surface real failures as exceptions, so keep the client logs to errors.
_QUIET = {"log_level": 3}


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create ``{topic: partitions}`` (replication 1); existing topics are left as they are.

    ``configs`` gives topic configs by topic name, e.g.
    ``{"out": {"message.timestamp.type": "LogAppendTime"}}``.
    """
    configs = configs or {}
    unknown = set(configs) - set(topics)
    if unknown:
        msg = f"configs for topics not being created: {sorted(unknown)}; add them to topics"
        raise ValueError(msg)
    admin = admin_client(bootstrap, **_QUIET)
    existing = set(admin.list_topics(timeout=10).topics)
    serve_logs(admin)
    new = [
        NewTopic(t, num_partitions=n, replication_factor=1, config=dict(configs.get(t, {})))
        for t, n in topics.items()
        if t not in existing
    ]
    if not new:
        return
    for topic, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                msg = f"creating topic {topic!r} on {bootstrap} failed: {exc}"
                raise ServiceError(msg) from exc


def produce(
    bootstrap: str,
    topic: str,
    payloads: Iterable[tuple[bytes | None, bytes]],
    *,
    rate: float = 0.0,
) -> int:
    """Write raw ``(key, value)`` payloads, at ``rate`` records/s if > 0; return the count."""
    writer = producer(
        bootstrap,
        **{"enable.idempotence": True, "linger.ms": 5, "acks": "all", **_QUIET},
    )
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    started = time.monotonic()
    for key, value in payloads:
        while True:
            try:
                writer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                writer.poll(0.1)
        count += 1
        writer.poll(0)
        if rate > 0:
            ahead = count / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    left = writer.flush(60)
    if left or errors:
        msg = f"producing to {topic!r}: {left} undelivered, errors: {errors[:3]}"
        raise ServiceError(msg)
    return count


def produce_avro(
    bootstrap: str,
    topic: str,
    schema: SchemaLike,
    values: Iterable[Mapping[str, Any]],
    *,
    key_field: str | None = None,
    rate: float = 0.0,
) -> int:
    """Encode ``values`` with ``schema`` and write them; return the count."""
    codec = AvroCodec(schema)
    return produce(
        bootstrap,
        topic,
        ((str(v[key_field]).encode() if key_field else None, codec.encode(v)) for v in values),
        rate=rate,
    )


@dataclass(frozen=True)
class Message:
    """One record read back: raw and (when a schema was given) decoded value, and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    value: dict[str, Any] | None
    headers: dict[str, str]


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    schema: SchemaLike | None = None,
    expect: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
    isolation: str = "read_committed",
) -> list[Message]:
    """Read a topic from the beginning with ``isolation`` (default ``read_committed``).

    Stops when ``expect`` messages have been read and then nothing more arrived for ``idle``
    seconds (so extra duplicates are still seen), when nothing arrived for ``idle`` seconds with
    ``expect`` unset, or at ``timeout``.
    """
    codec = AvroCodec(schema) if schema is not None else None
    reader = consumer(
        bootstrap,
        **{
            "group.id": f"flowship-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            **_QUIET,
        },
    )
    out: list[Message] = []
    try:
        md = reader.list_topics(topic, timeout=10).topics[topic]
        reader.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None:
                enough = expect is None or len(out) >= expect
                if enough and time.monotonic() - last >= idle:
                    break
                continue
            if msg.error():
                continue
            last = time.monotonic()
            raw = msg.value() or b""
            value = None
            if codec is not None:
                try:
                    value = codec.decode(bytes(raw))
                except PayloadError:
                    value = None
            headers: dict[str, str] = {}
            pairs: list[tuple[str, bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
            for name, data in pairs:
                headers[name] = (data or b"").decode(errors="replace")
            key = msg.key()
            out.append(
                Message(
                    topic=str(msg.topic()),
                    partition=int(msg.partition() or 0),
                    offset=int(msg.offset() or 0),
                    key=bytes(key) if key is not None else None,
                    raw=bytes(raw),
                    value=value,
                    headers=headers,
                )
            )
    finally:
        reader.close()
    return out
