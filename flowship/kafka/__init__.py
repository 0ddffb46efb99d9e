"""Kafka sources and sinks for flowship jobs: Avro payloads, provenance, dead letters, exactly once.

Declarations (:class:`KafkaSource`, :class:`KafkaSink`, :class:`Record`) import no PyFlink; the
PyFlink wiring lives in ``flowship.kafka._flink`` and is loaded when a job builds its graph.
"""

from flowship.kafka._declare import KafkaSink, KafkaSource
from flowship.kafka._record import Record

__all__ = ["KafkaSink", "KafkaSource", "Record"]
