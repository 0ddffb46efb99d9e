"""Throughput of the same keyed job with flowship's versioned Avro state against pickled state.

Both are the example job's logic without its flag (``bench/flags_job.py`` with
``BENCH_FLAGS=0``, against ``bench/pickled_state_job.py``) on the embedded mini-cluster (thread
mode, parallelism 2) reading the same Avro topic from a real broker; only the state differs:
flowship's ``fs.ValueState`` (Avro + writer fingerprint, kept as a STRING, cached reads) against
PyFlink's ``PICKLED_BYTE_ARRAY``.
Alternating runs, medians; records/s include start-up.

    python bench/state_overhead.py [--records 200000] [--runs 3] [--no-warm-up]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import ROOT, UNFLAGGED_ENV, UNFLAGGED_JOB, result, timed_run
from throughput import Runner, measure

from flowship.testing._proc import free_port


def runner(script: Path, env: dict[str, str] | None = None) -> Runner:
    def run(bootstrap: str, state: Path) -> float:
        return timed_run([sys.executable, str(script), "--bounded", "--kafka-bootstrap",
                          bootstrap, "--rest-port", str(free_port()), "--state-dir", str(state)],
                         env=env)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the unmeasured run that warms the broker (smoke runs)")
    args = parser.parse_args()
    print(f"{args.records} events, 1000 keys; {args.runs} alternating runs", flush=True)
    rates = measure(
        args.records, args.runs, runner(UNFLAGGED_JOB, UNFLAGGED_ENV),
        runner(ROOT / "bench" / "pickled_state_job.py"),
        ("flowship state", "pickled state"), warm_up=not args.no_warm_up)
    result("state_overhead", rates.first, rates.second)


if __name__ == "__main__":
    main()
