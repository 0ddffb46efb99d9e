"""Hand-over gap: the longest pause in production output around a promotion, against an upgrade's.

Input is produced at a steady rate the whole time; a read_committed consumer notes when each
output arrives. The figure is the longest time between two consecutive production outputs
arriving, from just before the change until both a few seconds after the new version's first
output and the change's end.

- flowship: v1 runs; v2 starts beside it (``job_v2.py --shadow``, outputs aside); after a
  warm-up, ``flowship promote click-sessions``: from an agreed cut v2 serves every partition
  (the version taking over holds its records at the cut until v1 committed up to it).
- baseline, the same job's savepoint upgrade (``job_v2.py --upgrade-from savepoint``): stop v1
  with a savepoint, start v2 from it.

Both on one real standalone session cluster and a real broker; runs alternate; medians are
reported. Each run also checks that no event has two outputs.

    python bench/handover_gap.py [--runs 3] [--rate 200] [--warm-up-s 12] [--target URL]
                                 [--checkpoint-interval-ms MS]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import median, result
from upgrade_gap import (
    TOPICS,
    WARMUP_S,
    Cluster,
    OutputWatch,
    SteadyInput,
    deploy,
    open_cluster,
    upgrade_flowship,
)

from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics


def promote_flowship(cluster: Cluster, bootstrap: str, state: Path, warm_up_s: float) -> None:
    """v2 dark beside v1, warmed up, then promoted to every partition."""
    deploy("job_v2.py", "--target", cluster.rest_url, "--kafka-bootstrap", bootstrap,
           "--state-dir", str(state), "--shadow")
    time.sleep(warm_up_s)
    done = subprocess.run(
        [sys.executable, "-m", "flowship.cli", "promote", "click-sessions",
         "--ledger-dir", str(state / "ledger")],
        capture_output=True, text=True, timeout=400, check=False)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        msg = f"flowship promote exited {done.returncode}"
        raise SystemExit(msg)


def upgrade(cluster: Cluster, bootstrap: str, state: Path, warm_up_s: float) -> None:
    upgrade_flowship(cluster, bootstrap, state)


Change = Callable[[Cluster, str, Path, float], None]


def longest_pause(arrivals: list[float], start: float, end: float) -> float:
    """The longest time between consecutive arrivals that touches ``[start, end]``."""
    times = sorted(arrivals)
    pauses = [b - a for a, b in itertools.pairwise(times) if b >= start and a <= end]
    if not pauses:
        msg = f"no output around the change ({len(times)} outputs in all)"
        raise SystemExit(msg)
    return max(pauses)


def one_run(cluster: Cluster, workdir: Path, rate: float, change: Change,
            warm_up_s: float = WARMUP_S) -> tuple[float, float]:
    """v1 on the cluster under steady input, ``change`` to v2; the longest output pause (s).

    Also the longest pause while v1 ran alone before the change (outputs become visible when
    a checkpoint commits their transaction: about the checkpoint interval in steady state).
    """
    with KafkaBroker(workdir / "kafka") as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, TOPICS)
        state = workdir / "state"
        watch, feed = OutputWatch(bootstrap), SteadyInput(bootstrap, rate)
        watch.start()
        feed.start()
        try:
            deploy("job.py", "--target", cluster.rest_url, "--kafka-bootstrap", bootstrap,
                   "--state-dir", str(state))
            watch.wait_for("1", 120)
            time.sleep(warm_up_s)
            began = time.monotonic()
            change(cluster, bootstrap, state, warm_up_s)
            watch.wait_for("2", 180)
            ended = max(time.monotonic(), min(watch.arrivals.get("2") or [time.monotonic()]))
            time.sleep(max(warm_up_s, 5.0))
        finally:
            feed.stop.set()
            feed.join(30)
            for job in cluster.rest.jobs():
                if job["state"] == "RUNNING":
                    with contextlib.suppress(Exception):
                        cluster.rest.cancel(job["jid"])
        time.sleep(3)
        watch.stop.set()
        watch.join(30)
        dups = sum(1 for c in watch.event_ids.values() if c > 1)
        if dups:
            msg = f"{dups} events have more than one output: the change was not exactly once"
            raise SystemExit(msg)
        if not watch.arrivals.get("2"):
            raise SystemExit("version 2 wrote nothing to production")
        everything = [t for times in watch.arrivals.values() for t in times]
        # a promotion's change starts once v2 ran dark for the warm-up: from there
        start = began + (warm_up_s if change is promote_flowship else 0.0)
        steady = longest_pause(everything, began - warm_up_s + 1.0, began)
        return longest_pause(everything, start, ended), steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="input events per second")
    parser.add_argument("--target", help="REST URL of a running session cluster to use (it "
                        "must run no other job); default: start one")
    parser.add_argument("--checkpoint-interval-ms", type=int, default=None,
                        help="both sides' checkpoint interval (FLOWSHIP_CHECKPOINT_INTERVAL_MS "
                        "for every job started; default: the jobs' own, 2000 ms). Outputs "
                        "become visible when a checkpoint commits them: the steady-state pause "
                        "is about this interval, and so is the longest pause around a promote")
    parser.add_argument("--warm-up-s", type=float, default=WARMUP_S,
                        help="seconds each version runs under input before a change and after "
                        "it (smoke runs use a few)")
    args = parser.parse_args()
    if args.checkpoint_interval_ms is not None:
        # the jobs read it from the environment: the same setting on both sides
        os.environ["FLOWSHIP_CHECKPOINT_INTERVAL_MS"] = str(args.checkpoint_interval_ms)
    print(f"v1 -> v2 of the example job under {args.rate:.0f} events/s; {args.runs} alternating "
          "runs each on one standalone session cluster; pause = the longest time between two "
          "production outputs around the change, as a read_committed consumer sees them",
          flush=True)
    handovers: list[float] = []
    upgrades: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flowship-handover-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            cluster = open_cluster(args.target, stack, root / "cluster")
            for i in range(args.runs):
                h, hs = one_run(cluster, root / f"promote-{i}", args.rate, promote_flowship,
                                args.warm_up_s)
                u, us = one_run(cluster, root / f"upgrade-{i}", args.rate, upgrade,
                                args.warm_up_s)
                handovers.append(h)
                upgrades.append(u)
                print(f"  run {i + 1}: promote {h * 1000:.0f} ms, savepoint upgrade "
                      f"{u * 1000:.0f} ms (steady state before each: {hs * 1000:.0f} ms, "
                      f"{us * 1000:.0f} ms)", flush=True)
    result("handover_gap", median(handovers) * 1000, median(upgrades) * 1000, unit="ms")


if __name__ == "__main__":
    main()
