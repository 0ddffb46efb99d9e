"""Throughput of the example job with three flags and routing rules in force, against the same
job without flags.

Both are the example job's session logic (``bench/flags_job.py``) on the embedded mini-cluster
(thread mode, parallelism 2) reading the same topic from a real broker. The baseline declares
no flags (so it has no control plane); the flowship side declares three flags and reads them
per record, with rules in force from offset 0 that are evaluated per record
where they can be: ``new-pricing percent=30:on``, ``tier partitions=1,3:gold``,
``cart-beta field.page=/cart:on`` and ``flowship.route percent=0:side`` (routing evaluated for
every record, none sent aside, so both sides write every output to the same topic). Its control
plane runs as in production: an agent per source subtask, beats, a view of the control topic.
Alternating runs, medians; records/s include start-up. Also printed: the median time of
``flowship flag set`` end to end (written -> acknowledged by every instance) on an idle job.

    python bench/flags.py [--records 200000] [--runs 6] [--set-runs 9] [--no-warm-up]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, median, median_interval, result, timed_run
from throughput import Runner, measure

from flowship.control import FlagClient, ensure_topic
from flowship.control._log import ControlLog
from flowship.testing._proc import free_port
from flowship.testing.jobs import JobProcess
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics

JOB = "click-sessions"
RULES = {
    "new-pricing": ["percent=30:on"],
    "tier": ["partitions=1,3:gold"],
    "cart-beta": ["field.page=/cart:on"],
    "flowship.route": ["percent=0:side"],
}


def runner(flags: bool) -> Runner:
    def run(bootstrap: str, state: Path) -> float:
        if flags:
            _rules_in_force(bootstrap)
        return timed_run([sys.executable, str(ROOT / "bench" / "flags_job.py"), "--bounded",
                          "--kafka-bootstrap", bootstrap, "--rest-port", str(free_port()),
                          "--state-dir", str(state)],
                         env={"BENCH_FLAGS": "3" if flags else "0"})
    return run


def _rules_in_force(bootstrap: str) -> None:
    """Register the flags job's declarations and put RULES in force from where it starts."""
    from flags_job import FLAGS, clicks

    topic = f"{JOB}.control"
    if ensure_topic(bootstrap, topic):
        log = ControlLog(bootstrap, topic)
        log.write("version/1", {
            "version": "1", "flags": [f.describe() for f in FLAGS],
            "sources": [{"uid": clicks.uid, "topic": clicks.topic,
                         "group": f"flowship.{JOB}.{clicks.uid}"}],
            "environment": "default"})
        log.close()
    with FlagClient(bootstrap, JOB) as client:
        for flag, rules in RULES.items():
            client.set_flag(flag, rules)  # nothing runs: from the group's committed offsets


def flag_set_latency(runs: int) -> list[float]:
    """Seconds of ``FlagClient.set_flag`` against the idle flags job (2 instances)."""
    with tempfile.TemporaryDirectory(prefix="flowship-bench-") as tmp, \
            KafkaBroker(Path(tmp) / "kafka") as broker:
        create_topics(broker.bootstrap, {"clicks": 4, "clicks.dlq": 1, "session-stats": 4})
        with JobProcess(ROOT / "bench" / "flags_job.py", broker.bootstrap,
                        Path(tmp) / "state") as job:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with FlagClient(broker.bootstrap, JOB) as client:
                        if len(client.running()) >= 2:
                            break
                except Exception:
                    pass
                if time.monotonic() > deadline or not job.running():
                    raise SystemExit("the flags job did not start:\n" + job.output()[-3000:])
                time.sleep(1)
            took = []
            with FlagClient(broker.bootstrap, JOB) as client:
                for i in range(runs):
                    change = client.set_flag("new-pricing", [f"percent={10 + i}:on"])
                    took.append(change.seconds)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--set-runs", type=int, default=9, help="flag set latency samples")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the unmeasured run that warms the broker (smoke runs)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    print(f"{args.records} events, 1000 keys; {args.runs} alternating runs", flush=True)
    rates = measure(args.records, args.runs, runner(True), runner(False),
                    ("3 flags + routing", "no flags"), warm_up=not args.no_warm_up)
    low, high, coverage = median_interval(rates.pair_ratios)
    print("per-pair ratios: " + " ".join(f"{r:.3f}" for r in rates.pair_ratios)
          + f"; median {median(rates.pair_ratios):.3f}, {coverage:.0%} interval "
          f"{low:.3f}-{high:.3f}")
    print(f"steady state: flags {rates.first_steady:,.0f} rec/s, no flags "
          f"{rates.second_steady:,.0f} rec/s, ratio "
          f"{rates.first_steady / rates.second_steady:.3f}")
    if args.set_runs:
        took = flag_set_latency(args.set_runs)
        print("flag set end to end on an idle local job (2 instances): median "
              f"{statistics.median(took) * 1000:.0f} ms; "
              + " ".join(f"{t * 1000:.0f}" for t in took) + " ms")
    result("flags", rates.first, rates.second)


if __name__ == "__main__":
    main()
