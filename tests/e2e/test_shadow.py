"""`python job_v2.py --shadow`: a dark launch beside production, real broker, real Flink.

Version 1 of the example runs on the local target under continuous input; a version that
differs from it on 1 % of records (one field) starts as a shadow from a savepoint taken without
stopping version 1. Checked independently of flowship's diff: production still writes every
output exactly once, all by version 1, and its consumer group is its own; the shadow writes one
output per input it read, all to its side topic; `flowship diff` finds exactly the changed
records; `flowship abort` stops the shadow, records RETIRED, and production runs on.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import events
import pytest
from confluent_kafka import Consumer, TopicPartition
from helpers import (
    EXAMPLE,
    STATS,
    assert_exactly_once,
    produce_clicks,
    read_outputs,
    setup_topics,
    tail,
)

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.rest import FlinkRest
from flowship.testing.jobs import JobProcess, job_command
from flowship.testing.kafka_io import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.jvm, pytest.mark.timeout(900)]

JOB = "click-sessions"
GROUP = f"flowship.{JOB}.clicks-source"
ONE_PERCENT = Path(__file__).parent / "jobs" / "one_percent_v2.py"
SIDE = "session-stats.side.1.2"
BROKEN = Path(__file__).parent / "jobs" / "broken_v2.py"
EVENTS = list(events.clicks(8000, users=40))
FIRST, SECOND, THIRD = EVENTS[:3000], EVENTS[3000:5000], EVENTS[5000:]


def changed(event_id: str) -> bool:
    """one_percent_v2.py's change, computed here on its own."""
    return int(event_id[1:]) % 100 == 0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowship.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def committed(bootstrap: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
    try:
        parts = [TopicPartition("clicks", p) for p in range(4)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def wait_for(what: str, check: Any, timeout: float, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    raise AssertionError(f"{what} not seen within {timeout:.0f}s\n{tail(log()) if log else ''}")


def test_dark_launch_beside_production_diff_and_abort(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    produce_clicks(bootstrap, FIRST)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    ledger_dir = ["--ledger-dir", str(state / "ledger")]
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    shadow = JobProcess(ONE_PERCENT, bootstrap, state, "--shadow")
    shadow.log = state / "shadow.log"
    producers = [
        threading.Thread(target=produce_clicks, args=(bootstrap, part, 250.0))  # 8 s, 12 s
        for part in (SECOND, THIRD)
    ]
    broken = JobProcess(BROKEN, bootstrap, state, "--shadow", "--restart-attempts", "0")
    broken.log = state / "broken.log"
    try:
        current = wait_for("version 1 RUNNING", lambda: ledger.current(JOB), 180, v1.output)
        read_outputs(bootstrap, expect=len(FIRST), timeout=180)
        rest, job_id = FlinkRest(current[1]["rest_url"]), current[1]["job_id"]
        before = (ledger.root / f"{JOB}.jsonl").read_bytes()

        # bad input first: a shadow of the running version itself is refused, nothing started
        same = subprocess.run(
            job_command(EXAMPLE / "job.py", bootstrap, state, "--shadow"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert same.returncode == 2, tail(same.stdout + same.stderr)
        assert "is the running version" in same.stderr
        assert cli("abort", JOB, *ledger_dir).returncode == 2  # no shadow runs

        # a shadow that fails on its first record fails alone: nothing of it reaches production
        producers[0].start()
        broken.start()
        assert broken.wait(timeout=300) != 0, tail(broken.output())
        assert "RuntimeError" in broken.output(), tail(broken.output())
        done = cli("abort", JOB, *ledger_dir, "--json")
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        assert "process is gone" in json.loads(done.stdout)["already_ended"]  # local: it exited
        assert read_topic(bootstrap, "session-stats.side.2-broken", timeout=10, idle=2.0) == []
        assert ledger.current(JOB) == current

        producers[0].join(timeout=180)
        producers[1].start()
        time.sleep(2)
        shadow.start()

        def shadow_running() -> Any:
            assert shadow.running(), tail(shadow.output())
            return ledger.current(f"{JOB}.shadow")

        found = wait_for("the shadow RUNNING", shadow_running, 240, shadow.output)
        deployment, data = found
        assert data["kind"] == "shadow" and data["shadow_of"] == current[0]
        assert data["version"] == "1.2" and data["rest_url"] != current[1]["rest_url"]
        # production's ledger entries, lease and job are untouched; a second shadow is refused
        assert (ledger.root / f"{JOB}.jsonl").read_bytes() == before
        assert ledger.current(JOB) == current
        again = subprocess.run(
            job_command(ONE_PERCENT, bootstrap, state, "--shadow"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert again.returncode == 2, tail(again.stdout + again.stderr)
        assert "runs already" in again.stderr and f"flowship abort {JOB}" in again.stderr
        # the shadow's instances take part in flag changes: both versions hold a rule at its
        # cut. They announce themselves once their decoders open, which can be after RUNNING is
        # recorded (an instance that starts later reads the committed rules before its first
        # record, so a change it did not acknowledge still applies at the cut): wait for its
        # first output first
        read_topic(bootstrap, SIDE, expect=1, timeout=180, idle=0.5)
        flag = cli(
            "flag",
            "set",
            JOB,
            "session-gap",
            "env=nowhere:60m",
            "--json",
            "--kafka-bootstrap",
            bootstrap,
        )
        assert flag.returncode == 0, tail(flag.stdout + flag.stderr)
        acked = {i.split("/")[0] for i in json.loads(flag.stdout)["acknowledged_by"]}
        assert acked == {f"{JOB}@1", f"{JOB}@1.2"}, acked
        status = cli("status", JOB, *ledger_dir)
        assert f"shadow {deployment}: version 1.2, RUNNING" in status.stdout, status.stdout

        producers[1].join(timeout=180)
        # production: every event exactly once, all by version 1; its group read it all
        outputs = read_outputs(bootstrap, expect=len(EVENTS), timeout=240)
        assert {m.headers["flowship.version"] for m in outputs} == {"1"}
        assert_exactly_once(outputs, EVENTS)
        wait_for(
            "production's group at the end", lambda: committed(bootstrap, GROUP) == len(EVENTS), 120
        )
        # the shadow: one output per input from its savepoint on, all on its side topic
        shadow_group = f"{GROUP}.shadow"
        wait_for(
            "the shadow's group at the end",
            lambda: committed(bootstrap, shadow_group) == len(EVENTS),
            180,
            shadow.output,
        )
        side = read_topic(bootstrap, SIDE, schema=STATS, timeout=60, idle=4.0)
        counts = collections.Counter(m.value["event_id"] for m in side)
        assert counts and max(counts.values()) == 1, "the shadow wrote an output twice"
        assert {m.headers["flowship.version"] for m in side} == {"1.2"}
        assert set(counts) <= {e["event_id"] for e in EVENTS}
        by_id = {m.value["event_id"]: m.value for m in outputs}
        expected = sorted(i for i in counts if changed(i))
        assert expected, "the sample should hold changed records"
        for m in side:
            ours = dict(by_id[m.value["event_id"]])
            if changed(m.value["event_id"]):
                ours["previous_page"] = "/dark"
            assert m.value == ours
        # flowship's diff finds exactly those records, and nothing else
        done = cli("diff", JOB, *ledger_dir, "--kafka-bootstrap", bootstrap, "--json")
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        (diff,) = json.loads(done.stdout)["sinks"]
        assert (diff["production"], diff["candidate"]) == ("session-stats", SIDE)
        assert diff["compared"] == len(counts), diff
        assert diff["different"] == len(expected), diff
        assert diff["fields"] == {"previous_page": len(expected)}
        assert diff["only_production"] == diff["only_candidate"] == 0, diff
        addresses = {m.headers["flowship.source"] for m in side if changed(m.value["event_id"])}
        assert len(addresses) == len(expected)
        assert {e["input"] for e in diff["examples"]} <= addresses
        assert len(diff["examples"]) == min(3, len(expected))
        text = cli("diff", JOB, *ledger_dir)  # the broker the shadow was started against
        print(text.stdout)
        assert f"{diff['different']} different (previous_page x{len(expected)})" in text.stdout
        assert "previous_page: None -> '/dark'" in text.stdout, text.stdout
        chart = tmp_path / "diff.html"
        drawn = cli("diff", JOB, *ledger_dir, "--html", str(chart))
        assert drawn.returncode == 0, tail(drawn.stdout + drawn.stderr)
        assert f'"name":"previous_page ({SIDE})"' in chart.read_text()
        # what counts as a difference, and a verdict: 1 % differ
        ignored = cli("diff", JOB, *ledger_dir, "--json", "--ignore", "previous_page")
        (sink,) = json.loads(ignored.stdout)["sinks"]
        assert (sink["different"], sink["equal"]) == (0, len(counts)), sink
        policy = ["--min-pairs", "100"]
        passed = cli("diff", JOB, *ledger_dir, *policy, "--max-diff-rate", "0.02", "--json")
        assert passed.returncode == 0, tail(passed.stdout + passed.stderr)
        verdict = json.loads(passed.stdout)["verdict"]
        assert verdict["outcome"] == "pass" and verdict["differing"] == len(expected), verdict
        failed = cli("diff", JOB, *ledger_dir, *policy, "--max-diff-rate", "0.001")
        assert failed.returncode == 10 and "verdict: fail:" in failed.stdout, failed.stdout
        waiting = cli("diff", JOB, *ledger_dir, "--min-pairs", "1000000", "--max-diff-rate", "1")
        assert waiting.returncode == 11 and "verdict: undecided:" in waiting.stdout
        bad = cli("diff", JOB, *ledger_dir, "--max-diff-rate", "2")
        assert bad.returncode == 2 and "not a fraction" in bad.stderr

        # abort: the shadow stops (its process ends by itself), production runs on
        done = cli("abort", JOB, *ledger_dir)
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        assert shadow.wait(timeout=120) == 0, tail(shadow.output())
        assert ledger.current(f"{JOB}.shadow") is None
        steps = [e.step.value for e in ledger.deployments(f"{JOB}.shadow")[deployment]]
        assert steps == ["PLANNED", "SUBMITTED", "RUNNING", "RETIRED"]
        assert rest.job(job_id)["state"] == "RUNNING"
        assert rest.exceptions(job_id).get("exceptionHistory", {}).get("entries", []) == []
        assert ledger.current(JOB) == current
        assert cli("abort", JOB, *ledger_dir).returncode == 2
        # its instances said goodbye: a flag change now waits for version 1's alone
        flag = cli(
            "flag", "set", JOB, "session-gap", "none", "--json", "--kafka-bootstrap", bootstrap
        )
        assert flag.returncode == 0, tail(flag.stdout + flag.stderr)
        acked = {i.split("/")[0] for i in json.loads(flag.stdout)["acknowledged_by"]}
        assert acked == {f"{JOB}@1"}, acked
        history = cli("history", JOB, *ledger_dir).stdout
        assert (
            f"{deployment}  version 1.2 (shadow): PLANNED -> SUBMITTED -> RUNNING -> RETIRED"
            in history
        )
    finally:
        for producer in producers:
            if producer.is_alive():
                producer.join(timeout=180)
        broken.stop()
        shadow.stop()
        v1.stop()


def test_shadow_of_a_job_that_does_not_run_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        job_command(ONE_PERCENT, "127.0.0.1:9", tmp_path / "state", "--shadow"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, tail(done.stdout + done.stderr)
    assert "unknown job 'click-sessions'" in done.stderr and "deploy it first" in done.stderr
    assert not (tmp_path / "state" / "ledger" / f"{JOB}.shadow.jsonl").exists()


@pytest.mark.cluster
def test_dark_launch_on_a_session_cluster(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    from test_cluster_upgrades import cancel_live_jobs

    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    evs = EVENTS[:2000]
    produce_clicks(bootstrap, evs[:1000])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    flags = ["--target", flink_session_cluster.rest_url, "--kafka-bootstrap", bootstrap]
    flags += ["--state-dir", str(state)]
    ledger_dir = ["--ledger-dir", str(state / "ledger")]

    def run(script: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *flags, *extra],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )

    try:
        first = run(EXAMPLE / "job.py")
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        read_outputs(bootstrap, expect=1000, timeout=180)
        current = ledger.current(JOB)
        assert current is not None
        # on a session cluster the shadow is one more job there; the command returns once it runs
        done = run(ONE_PERCENT, "--shadow")
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        found = ledger.current(f"{JOB}.shadow")
        assert found is not None
        deployment, data = found
        assert data["rest_url"] == current[1]["rest_url"] and data["job_id"] != current[1]["job_id"]
        assert rest.job(data["job_id"])["state"] == "RUNNING"
        produce_clicks(bootstrap, evs[1000:])
        outputs = read_outputs(bootstrap, expect=len(evs), timeout=180)
        assert {m.headers["flowship.version"] for m in outputs} == {"1"}
        assert_exactly_once(outputs, evs)
        side = read_topic(bootstrap, SIDE, schema=STATS, expect=1000, timeout=180, idle=4.0)
        ids = collections.Counter(m.value["event_id"] for m in side)
        assert set(ids) == {e["event_id"] for e in evs[1000:]} and max(ids.values()) == 1
        diff = cli("diff", JOB, *ledger_dir, "--json")
        assert diff.returncode == 0, tail(diff.stdout + diff.stderr)
        (sink,) = json.loads(diff.stdout)["sinks"]
        changed_ids = [i for i in ids if changed(i)]
        assert (sink["compared"], sink["different"]) == (1000, len(changed_ids)), sink
        aborted = cli("abort", JOB, *ledger_dir)
        assert aborted.returncode == 0, tail(aborted.stdout + aborted.stderr)
        assert rest.job(data["job_id"])["state"] == "FINISHED"  # stopped with a savepoint
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
        steps = [e.step.value for e in ledger.deployments(f"{JOB}.shadow")[deployment]]
        assert steps[-1] == "RETIRED"
    finally:
        cancel_live_jobs(rest)
