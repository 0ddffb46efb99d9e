"""Reading and writing a job's control topic with confluent-kafka.

Shared by the in-job agent and the ``flowship flag`` commands.
"""

from __future__ import annotations

import time
from typing import Any

from flowship._kafka import admin_client, consumer, producer, serve_logs
from flowship.control._view import ControlView, encode
from flowship.errors import ClusterError, ConfigError

#: Topic settings: one partition (one total order), compacted (every key of a rule in force is
#: unique, so compaction never drops one), broker append time (liveness is judged by one clock).
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "message.timestamp.type": "LogAppendTime",
    "min.compaction.lag.ms": "3600000",
}


def control_topic(job: str) -> str:
    """The default control topic of ``job``."""
    return f"{job}.control"


def ensure_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> bool:
    """Create the control topic if it is missing; True if this call created it."""
    admin, meta = admin_and_topics(bootstrap, timeout)
    if topic in meta.topics and meta.topics[topic].error is None:
        return False
    return bool(create_topics(admin, bootstrap, {topic: (1, TOPIC_CONFIG)}, meta, timeout))


def admin_and_topics(bootstrap: str, timeout: float) -> tuple[Any, Any]:
    """An admin client of ``bootstrap`` and the cluster's metadata (ClusterError if silent)."""
    from confluent_kafka import KafkaException

    admin = admin_client(bootstrap)
    try:
        return admin, admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        msg = f"Kafka at {bootstrap} did not answer ({exc}); check --kafka-bootstrap"
        raise ClusterError(msg) from exc
    finally:
        serve_logs(admin)


def create_topics(
    admin: Any,
    bootstrap: str,
    topics: dict[str, tuple[int, dict[str, str]]],
    meta: Any,
    timeout: float,
) -> set[str]:
    """Create ``topics`` (name -> partitions, config); the names this call created.

    A topic another client created meanwhile counts as there.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    if not topics:
        return set()
    replicas = min(3, max(len(meta.brokers), 1))
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=replicas, config=config)
        for name, (parts, config) in topics.items()
    ]
    created = set()
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
            created.add(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            msg = f"could not create topic {name!r} on {bootstrap}: {exc}"
            raise ClusterError(msg) from exc
        finally:
            serve_logs(admin)
    return created


class ControlLog:
    """A reader (from the start) and a writer of one control topic, folding into a view."""

    def __init__(self, bootstrap: str, topic: str, *, write: bool = True) -> None:
        from confluent_kafka import TopicPartition

        self.bootstrap = bootstrap
        self.topic = topic
        self.view = ControlView()
        #: broker append time of the newest record read
        self.last_timestamp = 0
        self._consumer = consumer(
            bootstrap,
            **{
                "group.id": "flowship.control.reader",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "isolation.level": "read_committed",
            },
        )
        self._tp = TopicPartition(topic, 0)
        self._producer: Any = None
        if write:
            self._producer = producer(
                bootstrap,
                **{"acks": "all", "enable.idempotence": True, "linger.ms": 0},
            )
        self._assigned = False
        #: offset of the last write the broker acknowledged (-1: none)
        self.written = -1
        self._failed: list[str] = []
        self._admin: Any = None

    def check_exists(self, timeout: float = 10.0) -> None:
        """Raise ConfigError if the topic does not exist, ClusterError if Kafka does not answer."""
        from confluent_kafka import KafkaException

        try:
            meta = self._consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            msg = f"Kafka at {self.bootstrap} did not answer ({exc}); check --kafka-bootstrap"
            raise ClusterError(msg) from exc
        info = meta.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            msg = (
                f"control topic {self.topic!r} does not exist on {self.bootstrap}; it is created "
                "when a version of the job that declares flags starts (or create it with "
                "flowship.control.ensure_topic), and a wrong job name or bootstrap also ends here"
            )
            raise ConfigError(msg)

    def _assign(self) -> None:
        if not self._assigned:
            from confluent_kafka import OFFSET_BEGINNING, TopicPartition

            self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            self._assigned = True

    def end(self, timeout: float = 10.0) -> int:
        """The topic's current end offset, asked of the broker.

        Through an admin client's ListOffsets: the assigned consumer's watermark query waits
        behind its fetch in flight (hundreds of milliseconds on an idle topic).
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import OffsetSpec

        if self._admin is None:
            self._admin = admin_client(self.bootstrap)
        try:
            futures = self._admin.list_offsets(
                {self._tp: OffsetSpec.latest()}, request_timeout=timeout
            )
            return int(futures[self._tp].result(timeout).offset)
        except KafkaException as exc:
            msg = f"Kafka at {self.bootstrap} did not answer ({exc})"
            raise ClusterError(msg) from exc
        finally:
            serve_logs(self._admin)

    def poll(self, timeout: float = 0.1, max_records: int = 500) -> int:
        """Fold whatever arrives within ``timeout``; return how many records."""
        self._assign()
        # what is there now; else wait for the next record, returning as soon as it arrives
        # (consume() with a timeout waits the whole timeout unless max_records arrive)
        records = self._consumer.consume(num_messages=max_records, timeout=0)
        if not records:
            one = self._consumer.poll(timeout)
            records = [one] if one is not None else []
        folded = 0
        for record in records:
            if record.error() is not None:
                continue
            key = record.key()
            if key is None:
                continue
            stamp = int(record.timestamp()[1] or 0)
            self.last_timestamp = max(self.last_timestamp, stamp)
            self.view.apply(key.decode(), record.value(), int(record.offset() or 0), stamp)
            folded += 1
        return folded

    def read_to_end(self, timeout: float = 30.0) -> ControlView:
        """Fold every record written before this call; ClusterError if that takes too long."""
        deadline = time.monotonic() + timeout
        target = self.end(timeout)
        while self.view.position < target:
            if time.monotonic() > deadline:
                msg = (
                    f"control topic {self.topic!r} on {self.bootstrap}: read "
                    f"{self.view.position} of {target} records in {timeout:.0f} s"
                )
                raise ClusterError(msg)
            self.poll(0.2)
        return self.view

    def write(self, key: str, value: dict[str, Any] | None, *, flush: bool = True) -> None:
        """Append one record (``None``: a tombstone)."""
        if self._producer is None:
            msg = "this control log was opened read-only"
            raise RuntimeError(msg)
        self._producer.produce(
            self.topic,
            key=key.encode(),
            value=encode(value),
            partition=0,
            on_delivery=self._delivered,
        )
        # serve the delivery reports of earlier writes: an agent's beats are never flushed, and
        # unserved reports would pile up in the client for as long as the job runs
        self._producer.poll(0)
        if flush:
            self.flush()

    def _delivered(self, err: Any, record: Any) -> None:
        if err is None:
            self.written = max(self.written, int(record.offset()))
        else:
            self._failed.append(str(err))

    def read_own_writes(self, timeout: float = 30.0) -> ControlView:
        """Fold everything up to this log's last acknowledged write (no broker query)."""
        self.flush()
        deadline = time.monotonic() + timeout
        while self.view.position <= self.written:
            if time.monotonic() > deadline:
                msg = f"control topic {self.topic!r} on {self.bootstrap}: own write not read back"
                raise ClusterError(msg)
            self.poll(0.2)
        return self.view

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every written record is acknowledged by the broker."""
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        if left > 0 or self._failed:
            why = "; ".join(self._failed) or f"{left} still queued after {timeout:g} s"
            self._failed.clear()
            msg = f"control topic {self.topic!r} on {self.bootstrap}: a write failed ({why})"
            raise ClusterError(msg)

    def close(self) -> None:
        """Close the clients (writes are flushed first, for up to 5 s).

        Every client is closed or released here, never left to the garbage collector: a job's
        agents live in a TaskManager that outlives the job, and a client nobody closes keeps its
        threads, reconnecting to the broker, for as long as that process runs.
        """
        producer, admin, self._producer, self._admin = self._producer, self._admin, None, None
        try:
            if producer is not None:
                if producer.flush(5) > 0:
                    producer.purge()  # a broker that is gone must not hold the close up
                    producer.flush(0)
                close = getattr(producer, "close", None)  # confluent-kafka >= 2.12
                if close is not None:
                    close()
        finally:
            del producer, admin  # the last references: their handles are destroyed now
            self._consumer.close()
