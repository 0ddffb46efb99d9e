"""Shared plumbing for the benchmarks: a broker, timed job runs, medians, RESULT lines."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _stats import median_interval

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "click_sessions"
#: The example job's session logic as a flowship job without flags (``bench/flags_job.py`` with
#: ``BENCH_FLAGS=0``): the flowship side wherever the other side is a job without flags. The
#: example job itself declares a flag, so it runs a control plane and decides per record, which
#: a hand-written baseline does not.
UNFLAGGED_JOB = ROOT / "bench" / "flags_job.py"
UNFLAGGED_ENV = {"BENCH_FLAGS": "0"}
sys.path.insert(0, str(EXAMPLE))

import events  # noqa: E402  (the example's event generator, on the path just set)

__all__ = ["EXAMPLE", "ROOT", "append_times", "end_offsets", "events", "median",
           "median_interval",
           "reset_consumer_groups", "result", "steady_rate", "timed_run"]


def timed_run(argv: list[str], timeout: float = 1800.0,
              env: dict[str, str] | None = None) -> float:
    """Run a job to completion; return its wall time in seconds (start-up included).

    ``env``: variables to set for the job on top of this process's environment.
    """
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})
    took = time.monotonic() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        msg = f"benchmark run failed (exit {done.returncode}): {' '.join(argv[:3])} ..."
        raise SystemExit(msg)
    return took


def reset_consumer_groups(bootstrap: str) -> None:
    """Delete every consumer group, so the next job run reads its topic from the beginning.

    flowship sources start from the group's committed offsets (Flink commits them on
    checkpoints): without this, a second run of the same job would read nothing.
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    groups = [g.group_id for g in admin.list_consumer_groups().result().valid]
    if groups:
        for future in admin.delete_consumer_groups(groups).values():
            future.result()


def median(values: list[float]) -> float:
    return statistics.median(values)


def result(name: str, flowship: float, baseline: float, unit: str = "") -> None:
    """Print the RESULT line the issues ask for (ratio = flowship / baseline)."""
    ratio = flowship / baseline if baseline else float("nan")
    print(
        f"RESULT {name} flowship={flowship:.4g}{unit} baseline={baseline:.4g}{unit} "
        f"ratio={ratio:.3f}",
        flush=True,
    )


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's high watermark: where the next run's output starts."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets",
                         "log_level": 3})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()


def append_times(bootstrap: str, topic: str, since: dict[int, int]) -> list[int]:
    """The broker's append times (ms) of the committed records written after ``since``.

    The topic must have ``message.timestamp.type=LogAppendTime``: the timestamps are then when
    the broker received each record, not the input's event time the sink passes on.
    """
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition

    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-times",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "log_level": 3})
    times: list[int] = []
    try:
        pending = {p for p in ends if ends[p] > since.get(p, 0)}
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in pending])
        while pending:
            batch = consumer.consume(num_messages=10_000, timeout=5)
            if not batch:
                break
            for msg in batch:
                partition, offset = msg.partition(), msg.offset()
                if msg.error() or partition is None or offset is None:
                    continue
                kind, ts = msg.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    raise SystemExit(f"topic {topic!r} must use LogAppendTime timestamps")
                times.append(ts)
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
            # transaction markers occupy the last offsets: stop at the end of what is there
            positions = consumer.position([TopicPartition(topic, p) for p in pending])
            pending -= {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}
    finally:
        consumer.close()
    return times


def steady_rate(times: list[int]) -> float:
    """Records/s between the 10th and the 90th percentile of the output's append times.

    Start-up, the first checkpoint and the end of the input fall outside that window: what is
    left is the rate the running job sustains.
    """
    if len(times) < 100:
        return float("nan")
    times = sorted(times)
    low, high = len(times) // 10, len(times) * 9 // 10
    span = (times[high] - times[low]) / 1000
    return (high - low) / span if span > 0 else float("nan")
