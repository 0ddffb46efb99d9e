"""Upgrade gap: how long downstream sees no output while a running job is upgraded v1 -> v2.

Input is produced at a steady rate the whole time; a read_committed consumer notes when each
output arrives and which version wrote it (the ``flowship.version`` header). The gap is the time
between the last v1 output it sees and the first v2 output.

- flowship: ``python job_v2.py --target URL --upgrade-from savepoint`` (gate, savepoint, submit
  the graph it built before stopping anything, health watch).
- baseline, the hand-run sequence: ``POST /jobs/:id/stop`` with a savepoint (polled until
  complete), then ``flink run -d -s SAVEPOINT`` of the same v2 code.

Both on one real standalone session cluster and a real broker; runs alternate; medians are
reported. Each run also checks that no event was lost or duplicated across the upgrade. The
local target's gap (embedded mini-cluster, same command without ``--target``) is printed too.
``--target URL`` uses a running session cluster instead of starting one; it must run no other
job (each run cancels every running job on it when done).

    python bench/upgrade_gap.py [--runs 3] [--rate 200] [--warm-up-s 12] [--skip-local]
        [--target URL]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from _common import EXAMPLE, ROOT, events, median, result
from confluent_kafka import Consumer, Message

from flowship.deploy.rest import FlinkRest
from flowship.schema import AvroCodec
from flowship.testing._proc import free_port
from flowship.testing.jobs import JobProcess
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import create_topics, produce
from flowship.testing.session_cluster import SessionCluster

TOPICS = {"clicks": 4, "session-stats": 4, "clicks.dlq": 1}
CLICK = AvroCodec(EXAMPLE / "click.avsc")
STATS = AvroCodec(EXAMPLE / "session_stats.avsc")
WARMUP_S = 12.0


def flink_cli() -> Path:
    """The ``flink`` command bundled in the pyflink package."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent / "bin" / "flink"


class SteadyInput(threading.Thread):
    """Clicks at ``rate`` per second until stopped."""

    def __init__(self, bootstrap: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.rate = bootstrap, rate
        self.stop = threading.Event()
        self.sent = 0

    def _payloads(self) -> Iterator[tuple[bytes, bytes]]:
        for event in events.clicks(10**8, users=300):
            if self.stop.is_set():
                return
            self.sent += 1
            yield event["user_id"].encode(), CLICK.encode(event)

    def run(self) -> None:
        produce(self.bootstrap, "clicks", self._payloads(), rate=self.rate)


def version(msg: Message) -> str:
    """The ``flowship.version`` header of an output record, ``?`` without one."""
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == "flowship.version":
            return value.decode() if isinstance(value, bytes) else value or "?"
    return "?"


class OutputWatch(threading.Thread):
    """Reads the output topic (read_committed) and notes when each version's records arrive."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self.event_ids: collections.Counter[str] = collections.Counter()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"gap-watch-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "log_level": 3,
        })
        self._consumer.subscribe(["session-stats"])

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                msg = self._consumer.poll(0.05)
                if msg is None or msg.error():
                    continue
                now = time.monotonic()
                value = msg.value()
                if value is None:
                    continue
                self.arrivals[version(msg)].append(now)
                self.event_ids[STATS.decode(value)["event_id"]] += 1
        finally:
            self._consumer.close()

    def wait_for(self, version: str, timeout: float) -> None:
        """Until an output of ``version`` arrived, or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while not self.arrivals.get(version) and time.monotonic() < deadline:
            time.sleep(0.5)

    def gap(self) -> float:
        old, new = self.arrivals.get("1"), self.arrivals.get("2")
        if not old or not new:
            seen = {k: len(v) for k, v in self.arrivals.items()}
            msg = f"no output from both versions: {seen}"
            raise SystemExit(msg)
        return min(new) - max(old)


def deploy(script: str, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(EXAMPLE / script), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        msg = f"{script} {' '.join(args)} exited {done.returncode}"
        raise SystemExit(msg)
    return done


def running_job(rest: FlinkRest) -> str:
    ids = [j["jid"] for j in rest.jobs() if j["state"] == "RUNNING"]
    if len(ids) != 1:
        msg = f"expected one RUNNING job on the cluster, found {ids}"
        raise SystemExit(msg)
    return ids[0]


class Cluster(Protocol):
    """A session cluster: started here (``SessionCluster``) or already running (``--target``)."""

    @property
    def rest_url(self) -> str: ...

    @property
    def rest(self) -> FlinkRest: ...


class RunningCluster:
    """A session cluster started elsewhere, by its REST URL."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url.rstrip("/")

    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)


def open_cluster(target: str | None, stack: contextlib.ExitStack, where: Path) -> Cluster:
    """The session cluster at ``target`` (it must run no job), else one started in ``where``."""
    if target:
        cluster = RunningCluster(target)
        busy = [j["jid"] for j in cluster.rest.jobs() if j["state"] == "RUNNING"]
        if busy:
            msg = f"the cluster at {target} runs jobs {busy}: it must run none"
            raise SystemExit(msg)
        return cluster
    return stack.enter_context(SessionCluster(where))


VERBOSE = False


def upgrade_flowship(cluster: Cluster, bootstrap: str, state: Path) -> None:
    done = deploy("job_v2.py", "--target", cluster.rest_url, "--kafka-bootstrap", bootstrap,
           "--state-dir", str(state), "--upgrade-from", "savepoint", "--health-window-s", "60")
    if VERBOSE:
        print(done.stdout[-6000:], done.stderr[-6000:], sep="\n")


def upgrade_by_hand(cluster: Cluster, bootstrap: str, state: Path) -> None:
    rest = cluster.rest
    job_id = running_job(rest)
    savepoint = rest.stop_with_savepoint(job_id, state / "click-sessions" / "savepoints" / "hand")
    host, port = cluster.rest_url.removeprefix("http://").split(":")
    done = subprocess.run(
        [str(flink_cli()), "run", "-d", "-s", savepoint, f"-Drest.address={host}",
         f"-Drest.port={port}", "-pyexec", sys.executable, "-pyclientexec", sys.executable,
         "-py", str(ROOT / "bench" / "handrun_submit.py"), "--",
         "--script", str(EXAMPLE / "job_v2.py"), "--kafka-bootstrap", bootstrap,
         "--state-dir", str(state)],
        capture_output=True, text=True, timeout=400, check=False)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        msg = f"flink run exited {done.returncode}"
        raise SystemExit(msg)


Upgrade = Callable[[Cluster, str, Path], None]


def one_run(cluster: Cluster, workdir: Path, rate: float, upgrade: Upgrade,
            warm_up_s: float = WARMUP_S) -> float:
    """v1 on the cluster under steady input, upgrade to v2, return the output gap in seconds."""
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
            upgrade(cluster, bootstrap, state)
            # the hand-run `flink run -d` returns on submission: v2 may not have written yet
            watch.wait_for("2", 180)
            time.sleep(warm_up_s)
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
            msg = f"{dups} events have more than one output: the upgrade was not exactly once"
            raise SystemExit(msg)
        return watch.gap()


def local_gap(workdir: Path, rate: float, warm_up_s: float = WARMUP_S) -> float:
    """The same upgrade on the local target: embedded mini-cluster in the job's process."""
    with KafkaBroker(workdir / "kafka") as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, TOPICS)
        state, port = workdir / "state", str(free_port())
        watch, feed = OutputWatch(bootstrap), SteadyInput(bootstrap, rate)
        watch.start()
        feed.start()
        v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state, "--rest-port", port)
        v2 = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--rest-port", port,
                        "--upgrade-from", "savepoint")
        v2.log = state / "job-v2.log"
        try:
            v1.start()
            watch.wait_for("1", 120)
            time.sleep(warm_up_s)
            v2.start()
            watch.wait_for("2", 180)
            time.sleep(5)
        finally:
            feed.stop.set()
            feed.join(30)
            v2.stop()
            v1.stop()
        watch.stop.set()
        watch.join(30)
        return watch.gap()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="input events per second")
    parser.add_argument("--verbose", action="store_true", help="print flowship's upgrade log")
    parser.add_argument("--skip-local", action="store_true", help="no local-target gap")
    parser.add_argument("--target", help="REST URL of a running session cluster to use (it "
                        "must run no other job); default: start one")
    parser.add_argument("--warm-up-s", type=float, default=WARMUP_S,
                        help="seconds each version runs under input before the upgrade and after "
                        "it (smoke runs use a few)")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    print(f"v1 -> v2 of the example job under {args.rate:.0f} events/s; {args.runs} alternating "
          "runs each on one standalone session cluster; gap = last v1 output to first v2 "
          "output, as a read_committed consumer sees them", flush=True)
    flowship_gaps: list[float] = []
    baseline_gaps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="flowship-gap-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            cluster = open_cluster(args.target, stack, root / "cluster")
            for i in range(args.runs):
                f = one_run(cluster, root / f"flowship-{i}", args.rate, upgrade_flowship,
                            args.warm_up_s)
                b = one_run(cluster, root / f"baseline-{i}", args.rate, upgrade_by_hand,
                            args.warm_up_s)
                flowship_gaps.append(f)
                baseline_gaps.append(b)
                print(f"  run {i + 1}: flowship {f:.2f}s, hand-run {b:.2f}s", flush=True)
        if not args.skip_local:
            local = local_gap(root / "local", args.rate, args.warm_up_s)
            print(f"local target (embedded mini-cluster, same command without --target): "
                  f"gap {local:.2f}s")
    result("upgrade_gap", median(flowship_gaps), median(baseline_gaps), unit="s")


if __name__ == "__main__":
    main()
