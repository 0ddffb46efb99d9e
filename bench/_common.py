"""Shared plumbing for the benchmarks: a broker, timed job runs, medians, RESULT lines."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "click_sessions"
sys.path.insert(0, str(EXAMPLE))

import events  # noqa: E402  (the example's event generator, on the path just set)

__all__ = ["EXAMPLE", "ROOT", "events", "median", "reset_consumer_groups", "result",
           "timed_run"]


def timed_run(argv: list[str], timeout: float = 1800.0) -> float:
    """Run a job to completion; return its wall time in seconds (start-up included)."""
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
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
