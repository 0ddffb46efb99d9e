"""Throughput of the example job built with flowship against the same job in plain PyFlink.

Both read the same Avro topic (4 partitions) from a real Kafka broker through the same Flink
Kafka connector, keep per-user session state, and write exactly once; both run on the embedded
mini-cluster in the same execution mode (flowship's default, thread). Runs alternate; medians
are reported. records/s = records / wall time of the job process (start-up included).

    python bench/throughput.py [--records 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import EXAMPLE, ROOT, events, median, reset_consumer_groups, result, timed_run

from flowship.schema import AvroCodec
from flowship.testing._proc import free_port
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics, produce

PYFLINK_DEFAULTS = {
    "python.execution-mode": ("process", "thread"),
    "execution.checkpointing.interval": ("off", "2 s"),
    "execution.checkpointing.externalized-checkpoint-retention": (
        "NO_EXTERNALIZED_CHECKPOINTS",
        "RETAIN_ON_CANCELLATION",
    ),
    "restart-strategy.type": ("none without checkpoints", "fixed-delay, 20 x 2 s"),
    "Kafka source isolation.level": ("read_uncommitted", "read_committed"),
    "Kafka sink delivery guarantee": ("NONE", "EXACTLY_ONCE"),
    "keyed Python state": ("pickled (PICKLED_BYTE_ARRAY)", "Flink types / Avro (never pickle)"),
}


def run_flowship(bootstrap: str, state: Path, mode: str) -> float:
    return timed_run(
        [
            sys.executable,
            str(EXAMPLE / "job.py"),
            "--bounded",
            "--kafka-bootstrap",
            bootstrap,
            "--rest-port",
            str(free_port()),
            "--state-dir",
            str(state),
            "--execution-mode",
            mode,
        ]
    )


def run_baseline(bootstrap: str, state: Path, mode: str) -> float:
    return timed_run(
        [
            sys.executable,
            str(ROOT / "bench" / "baseline_job.py"),
            "--kafka-bootstrap",
            bootstrap,
            "--rest-port",
            str(free_port()),
            "--state-dir",
            str(state),
            "--mode",
            mode,
        ]
    )


Runner = Callable[[str, Path], float]


def measure(records: int, runs: int, first: Runner, second: Runner,
            labels: tuple[str, str]) -> tuple[float, float]:
    """Median records/s of two job runners over the same topic, alternating, one broker."""
    with tempfile.TemporaryDirectory(prefix="flowship-bench-") as tmp, \
            KafkaBroker(Path(tmp) / "kafka") as broker:
        create_topics(broker.bootstrap, {"clicks": 4, "session-stats": 4, "clicks.dlq": 1})
        codec = AvroCodec(EXAMPLE / "click.avsc")
        produce(broker.bootstrap, "clicks", [(e["user_id"].encode(), codec.encode(e))
                                             for e in events.clicks(records, users=1000)])
        rates: tuple[list[float], list[float]] = ([], [])
        for i in range(runs):
            line = []
            for j, runner in enumerate((first, second)):
                reset_consumer_groups(broker.bootstrap)
                took = runner(broker.bootstrap, Path(tmp) / f"run{i}-{j}")
                rates[j].append(records / took)
                line.append(f"{labels[j]} {rates[j][-1]:,.0f} rec/s ({took:.1f}s)")
            print(f"  run {i + 1}: " + ", ".join(line), flush=True)
    return median(rates[0]), median(rates[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--defaults-records",
        type=int,
        default=20_000,
        help="records for the defaults-against-defaults run; 0 skips it",
    )
    args = parser.parse_args()

    print(
        f"{args.records} Avro click events, 4 partitions, 1000 users, parallelism 2; "
        f"{args.runs} alternating runs each, both in thread mode",
        flush=True,
    )
    fs_rate, base_rate = measure(
        args.records, args.runs,
        lambda b, d: run_flowship(b, d, "thread"), lambda b, d: run_baseline(b, d, "thread"),
        ("flowship", "plain PyFlink"))

    print("\nflowship defaults against PyFlink defaults:")
    for key, (pyflink, flowship) in PYFLINK_DEFAULTS.items():
        print(f"  {key:58} PyFlink: {pyflink:30} flowship: {flowship}")
    if args.defaults_records:
        print(
            f"\ndefaults against defaults ({args.defaults_records} events, 1 run): flowship "
            "(thread) against plain PyFlink in its default process mode",
            flush=True,
        )
        d_fs, d_base = measure(
            args.defaults_records, 1,
            lambda b, d: run_flowship(b, d, "thread"), lambda b, d: run_baseline(b, d, "process"),
            ("flowship (thread)", "plain PyFlink (process)"))
        print(
            f"  defaults: flowship {d_fs:,.0f} rec/s, PyFlink default {d_base:,.0f} rec/s, "
            f"ratio {d_fs / d_base:.2f}"
        )
    result("throughput", fs_rate, base_rate)


if __name__ == "__main__":
    main()
