"""Start-up: the example job's bounded run over a small topic, flowship against plain PyFlink.

Three jobs run in turn (rotating order), each to completion over the same 200 click events
(4 partitions) on the embedded mini-cluster, so their wall time is almost all start-up and
shutdown: the flowship job with its JVM class-data archive (``flowship/job/_class_cache.py``,
warmed by two unmeasured runs into a folder of this run's own), the same flowship job with the
archive off (``FLOWSHIP_JVM_CLASS_CACHE=off``), and the job hand-written in plain PyFlink
(``bench/baseline_job.py``). Medians of wall seconds. ``RESULT startup`` gives each side's
start-ups per second (1 / its median seconds), so ratio = plain PyFlink's seconds / flowship's:
above 1, flowship starts faster. The archive's own effect (off against on) is printed too.

    python bench/startup.py [--runs 5] [--records 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    EXAMPLE,
    ROOT,
    UNFLAGGED_ENV,
    UNFLAGGED_JOB,
    events,
    median,
    reset_consumer_groups,
    result,
    timed_run,
)

from flowship.job._class_cache import CACHE_ENV, SETTLE_S
from flowship.schema import AvroCodec
from flowship.testing._proc import free_port
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics, produce


def run_flowship(bootstrap: str, state: Path, cache: str) -> float:
    argv = [sys.executable, str(UNFLAGGED_JOB), "--bounded", "--kafka-bootstrap", bootstrap,
            "--rest-port", str(free_port()), "--state-dir", str(state)]
    return timed_run(argv, env={**UNFLAGGED_ENV, CACHE_ENV: cache})


def run_baseline(bootstrap: str, state: Path) -> float:
    argv = [sys.executable, str(ROOT / "bench" / "baseline_job.py"), "--kafka-bootstrap",
            bootstrap, "--rest-port", str(free_port()), "--state-dir", str(state),
            "--mode", "thread"]
    return timed_run(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    # the JVM's own choices win over the archive (see _class_cache): measure without them
    os.environ.pop("JVM_ARGS", None)
    print(f"{args.records} events; {args.runs} runs of each job, rotating order", flush=True)
    with tempfile.TemporaryDirectory(prefix="flowship-bench-") as tmp, \
            KafkaBroker(Path(tmp) / "kafka") as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, {"clicks": 4, "clicks.dlq": 1, "session-stats": 4})
        codec = AvroCodec(EXAMPLE / "click.avsc")
        produce(bootstrap, "clicks", [(e["user_id"].encode(), codec.encode(e))
                                      for e in events.clicks(args.records, users=10)])
        cache = str(Path(tmp) / "jvm-classes")
        # the first run's JVM writes the archive as it exits; once settled, the next takes it
        for i in range(2):
            reset_consumer_groups(bootstrap)
            run_flowship(bootstrap, Path(tmp) / f"warm-{i}", cache)
            if i == 0:
                time.sleep(SETTLE_S + 1)
        if not list(Path(cache).glob("*.jsa")):
            raise SystemExit(f"no class-data archive in {cache} after two runs")
        sides = {
            "flowship": lambda b, d: run_flowship(b, d, cache),
            "flowship, archive off": lambda b, d: run_flowship(b, d, "off"),
            "plain PyFlink": run_baseline,
        }
        took: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for i in range(args.runs):
            order = names[i % 3:] + names[: i % 3]
            line = []
            for name in order:
                reset_consumer_groups(bootstrap)
                took[name].append(sides[name](bootstrap, Path(tmp) / f"run{i}-{names.index(name)}"))
                line.append(f"{name} {took[name][-1]:.1f}s")
            print(f"  run {i + 1}: " + ", ".join(line), flush=True)
    on, off, plain = (median(took[n]) for n in names)
    print(f"medians: flowship {on:.2f}s, flowship with the archive off {off:.2f}s, plain PyFlink "
          f"{plain:.2f}s; the archive saves {off - on:.2f}s ({off / on:.2f}x)")
    result("startup", 1 / on, 1 / plain)  # ratio = plain's seconds / flowship's


if __name__ == "__main__":
    main()
