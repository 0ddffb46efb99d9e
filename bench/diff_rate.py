"""How fast flowship's output diff compares two versions' outputs, against a plain consumer.

Two topics (4 partitions each) hold the same N outputs of the example job (session stats, one
per input click, each naming its input in ``flowship.source``), as a running version and a
candidate would write them; the candidate's differ from production's in one field for about
1 % of the inputs. flowship reads both topics (read_committed) and compares them with
``flowship.deploy.diff`` (pairs by input address, decodes what is not byte-equal, counts
differing fields); the baseline is a plain confluent-kafka read_committed consumer reading the
same two topics to their end, batched the same way, doing nothing with the records. Alternating
runs, medians.

    python bench/diff_rate.py [--records 200000] [--runs 5]

Prints ``RESULT diff flowship=<pairs compared/s> baseline=<records read/s> ratio=<r>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import EXAMPLE, median, result
from confluent_kafka import Consumer, TopicPartition

from flowship.deploy.diff import compare, decoder, read_topics
from flowship.schema import AvroCodec
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics

PRODUCTION, CANDIDATE = "session-stats", "session-stats.side.2"
PARTITIONS = 4


def produce_outputs(bootstrap: str, records: int) -> int:
    """Write the same outputs to both topics; the candidate's differ for every 100th input."""
    from confluent_kafka import Producer

    codec = AvroCodec(EXAMPLE / "session_stats.avsc")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 3})
    changed = 0
    for i in range(records):
        user = f"u{i % 1000:04d}"
        value: dict[str, Any] = {
            "event_id": f"e{i:08d}", "user_id": user, "session_clicks": i % 7 + 1,
            "total_clicks": i // 1000 + 1, "session_start": 1_767_000_000_000 + i,
            "sessions": i % 5 + 1, "previous_page": None}
        address = f"clicks/{i % PARTITIONS}/{i // PARTITIONS}"
        headers: list[tuple[str, str | bytes | None]] = [
            ("flowship.version", b"1"), ("flowship.source", address.encode())]
        payload = codec.encode(value)
        producer.produce(PRODUCTION, key=user.encode(), value=payload, headers=headers,
                         partition=i % PARTITIONS)
        if i % 100 == 0:
            value = {**value, "session_clicks": value["session_clicks"] + 1}
            payload = codec.encode(value)
            changed += 1
        headers = [("flowship.version", b"2"), ("flowship.source", address.encode())]
        producer.produce(CANDIDATE, key=user.encode(), value=payload, headers=headers,
                         partition=i % PARTITIONS)
        if i % 10_000 == 0:
            producer.flush()
    producer.flush()
    return changed


def plain_read(bootstrap: str) -> int:
    """Records a plain read_committed consumer reads from both topics to their end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench.{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "log_level": 3})
    try:
        parts = [TopicPartition(t, p, 0) for t in (PRODUCTION, CANDIDATE)
                 for p in range(PARTITIONS)]
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in parts}
        todo = {k for k, end in ends.items() if end > 0}
        consumer.assign(parts)
        count = 0
        while todo:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                count += 1
                where = (msg.topic(), msg.partition())
                if (msg.offset() or 0) + 1 >= ends[where]:  # type: ignore[index]
                    todo.discard(where)
        return count
    finally:
        consumer.close()


def flowship_diff(bootstrap: str, changed: int) -> int:
    """Input addresses flowship's diff compared; checks it found exactly the changed ones."""
    schema = AvroCodec(EXAMPLE / "session_stats.avsc").schema
    outputs = read_topics(bootstrap, {PRODUCTION: None, CANDIDATE: None})
    diff = compare(outputs[PRODUCTION], outputs[CANDIDATE], decoder(schema), decoder(schema))
    if diff.different != changed or diff.fields != {"session_clicks": changed}:
        raise SystemExit(f"the diff found {diff.summary()}; {changed} inputs were changed")
    return diff.compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.records} outputs per topic, {PARTITIONS} partitions; {args.runs} alternating "
          "runs", flush=True)
    with tempfile.TemporaryDirectory(prefix="flowship-bench-") as tmp, \
            KafkaBroker(Path(tmp) / "kafka") as broker:
        create_topics(broker.bootstrap, {PRODUCTION: PARTITIONS, CANDIDATE: PARTITIONS})
        changed = produce_outputs(broker.bootstrap, args.records)
        plain_read(broker.bootstrap)  # warms the broker's page cache and JIT, unmeasured
        pairs: list[float] = []
        reads: list[float] = []
        for i in range(args.runs):
            order = ("flowship", "plain") if i % 2 == 0 else ("plain", "flowship")
            line = []
            for side in order:
                started = time.monotonic()
                if side == "flowship":
                    compared = flowship_diff(broker.bootstrap, changed)
                    pairs.append(compared / (time.monotonic() - started))
                    line.append(f"flowship {pairs[-1]:,.0f} pairs/s")
                else:
                    count = plain_read(broker.bootstrap)
                    reads.append(count / (time.monotonic() - started))
                    line.append(f"plain consumer {reads[-1]:,.0f} records/s")
            print(f"  run {i + 1}: " + ", ".join(line), flush=True)
    result("diff", median(pairs), median(reads))


if __name__ == "__main__":
    main()
