"""Throughput of the example job built with flowship against the same job in plain PyFlink.

The flowship side is the example job's logic without its flag (``bench/flags_job.py`` with
``BENCH_FLAGS=0``; the example declares one, so it runs a control plane the hand-written job has no
equivalent of, which ``bench/flags.py`` measures). Both read the same Avro topic (4 partitions)
from a real Kafka broker through the same Flink Kafka connector, keep per-user session state, and
write exactly once; both run on the embedded mini-cluster in the same execution mode (flowship's
default, thread). One unmeasured run warms the broker; then runs alternate, in ABBA order; medians
are reported. records/s = records / wall time of the job process (start-up included): that is the
RESULT. Also printed: each pair's ratio (the two runs of a pair share the machine's state, which
drifts) with a confidence interval for their median, and the steady-state rate, from the broker's
append times of the outputs (LogAppendTime), between the 10th and the 90th percentile, which leaves
start-up and shutdown out. Every run must write exactly one output per input.

    python bench/throughput.py [--records 200000] [--runs 6] [--defaults-records 20000]
        [--no-warm-up]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import (
    EXAMPLE,
    ROOT,
    UNFLAGGED_ENV,
    UNFLAGGED_JOB,
    append_times,
    end_offsets,
    events,
    median,
    median_interval,
    reset_consumer_groups,
    result,
    steady_rate,
    timed_run,
)

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
            str(UNFLAGGED_JOB),
            "--bounded",
            "--kafka-bootstrap",
            bootstrap,
            "--rest-port",
            str(free_port()),
            "--state-dir",
            str(state),
            "--execution-mode",
            mode,
        ],
        env=UNFLAGGED_ENV,
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
OUTPUT = "session-stats"


@dataclass
class Rates:
    """Medians of one comparison: start-up included, steady state, and the per-pair ratios."""

    first: float
    second: float
    first_steady: float
    second_steady: float
    pair_ratios: list[float]


def _create_topics(bootstrap: str) -> None:
    # the broker stamps each output record when it arrives: the steady-state rate comes from it
    create_topics(bootstrap, {"clicks": 4, "clicks.dlq": 1, OUTPUT: 4},
                  {OUTPUT: {"message.timestamp.type": "LogAppendTime"}})


def measure(records: int, runs: int, first: Runner, second: Runner,
            labels: tuple[str, str], warm_up: bool = True) -> Rates:
    """Rates of two job runners over the same topic, alternating, one broker."""
    with tempfile.TemporaryDirectory(prefix="flowship-bench-") as tmp, \
            KafkaBroker(Path(tmp) / "kafka") as broker:
        _create_topics(broker.bootstrap)
        codec = AvroCodec(EXAMPLE / "click.avsc")
        produce(broker.bootstrap, "clicks", [(e["user_id"].encode(), codec.encode(e))
                                             for e in events.clicks(records, users=1000)])
        # A fresh broker compiles its hot paths (JIT) during its first heavy load, which cost
        # the first run about a third of a core here: one unmeasured run of the second job
        # warms it. Then the order alternates (ABBA), so neither job always runs first.
        if warm_up:
            reset_consumer_groups(broker.bootstrap)
            second(broker.bootstrap, Path(tmp) / "warm-up")
        rates: tuple[list[float], list[float]] = ([], [])
        steady: tuple[list[float], list[float]] = ([], [])
        for i in range(runs):
            line = []
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for j in order:
                runner = (first, second)[j]
                reset_consumer_groups(broker.bootstrap)
                before = end_offsets(broker.bootstrap, OUTPUT)
                took = runner(broker.bootstrap, Path(tmp) / f"run{i}-{j}")
                times = append_times(broker.bootstrap, OUTPUT, before)
                if len(times) != records:
                    msg = f"{labels[j]} wrote {len(times)} outputs for {records} inputs"
                    raise SystemExit(msg)
                rates[j].append(records / took)
                steady[j].append(steady_rate(times))
                line.append(f"{labels[j]} {rates[j][-1]:,.0f} rec/s ({took:.1f}s, steady "
                            f"{steady[j][-1]:,.0f})")
            print(f"  run {i + 1}: " + ", ".join(line), flush=True)
    pairs = [a / b for a, b in zip(*rates, strict=True)]
    return Rates(median(rates[0]), median(rates[1]), median(steady[0]), median(steady[1]),
                 pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    # single pairs vary by about +-10% on a noisy machine: fewer than 6 pairs say little
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument(
        "--defaults-records",
        type=int,
        default=20_000,
        help="records for the defaults-against-defaults run; 0 skips it",
    )
    parser.add_argument(
        "--no-warm-up",
        action="store_true",
        help="skip the unmeasured run that warms the broker (for smoke runs: the figures of "
        "the first pair are then biased)",
    )
    args = parser.parse_args()

    print(
        f"{args.records} Avro click events, 4 partitions, 1000 users, parallelism 2; "
        f"{args.runs} alternating runs each, both in thread mode",
        flush=True,
    )
    rates = measure(
        args.records, args.runs,
        lambda b, d: run_flowship(b, d, "thread"), lambda b, d: run_baseline(b, d, "thread"),
        ("flowship", "plain PyFlink"), warm_up=not args.no_warm_up)
    low, high, coverage = median_interval(rates.pair_ratios)
    print(
        "\nper-pair ratios (flowship / baseline, start-up included): "
        + " ".join(f"{r:.3f}" for r in rates.pair_ratios)
        + f"; median {median(rates.pair_ratios):.3f}, {coverage:.0%} interval for it "
        f"{low:.3f}-{high:.3f}"
    )
    print(
        f"steady state (10th-90th percentile of output append times): flowship "
        f"{rates.first_steady:,.0f} rec/s, baseline {rates.second_steady:,.0f} rec/s, "
        f"ratio {rates.first_steady / rates.second_steady:.3f}"
    )

    print("\nflowship defaults against PyFlink defaults:")
    for key, (pyflink, flowship) in PYFLINK_DEFAULTS.items():
        print(f"  {key:58} PyFlink: {pyflink:30} flowship: {flowship}")
    if args.defaults_records:
        print(
            f"\ndefaults against defaults ({args.defaults_records} events, 1 run): flowship "
            "(thread) against plain PyFlink in its default process mode",
            flush=True,
        )
        defaults = measure(
            args.defaults_records, 1,
            lambda b, d: run_flowship(b, d, "thread"), lambda b, d: run_baseline(b, d, "process"),
            ("flowship (thread)", "plain PyFlink (process)"), warm_up=False)
        print(
            f"  defaults: flowship {defaults.first:,.0f} rec/s, PyFlink default "
            f"{defaults.second:,.0f} rec/s, ratio {defaults.first / defaults.second:.2f}"
        )
    result("throughput", rates.first, rates.second)


if __name__ == "__main__":
    main()
