"""A broken version 2 on the real session cluster is rolled back to version 1 by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import events
import pytest
from helpers import (
    assert_exactly_once,
    produce_clicks,
    produce_clicks_gated,
    produce_clicks_when,
    read_outputs,
    setup_topics,
    tail,
)
from test_cluster_upgrades import cancel_live_jobs, deploy
from test_local_upgrades import JOB

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.errors import ClusterError

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(900)]

BROKEN = Path(__file__).parent / "jobs" / "broken_v2.py"


def test_broken_version_is_rolled_back_on_the_session_cluster(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(12_000, users=200))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 400.0))  # 30 s
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        v1_job = ledger.current(JOB)[1]["job_id"]
        producer.start()
        time.sleep(8)
        started = time.monotonic()
        v2 = deploy(
            str(BROKEN),
            flink_session_cluster,
            bootstrap,
            state,
            "--upgrade-from",
            "savepoint",
            "--health-window-s",
            "45",
        )
        took = time.monotonic() - started
        assert v2.returncode == 6, tail(v2.stdout + v2.stderr)
        assert "rolled back to version 1" in v2.stderr, tail(v2.stderr)
        assert rest.job(v1_job)["state"] == "FINISHED"  # stopped with the pre-upgrade savepoint

        deployments = list(ledger.deployments(JOB).items())
        failed_id, failed = deployments[-2]
        assert [e.step for e in failed] == [
            Step.PLANNED,
            Step.CHECKED,
            Step.SAVEPOINTING,
            Step.STOPPED,
            Step.SUBMITTED,
            Step.RUNNING,
            Step.FAILED,
            Step.ROLLING_BACK,
            Step.ROLLED_BACK,
        ]
        # the reason is the root cause from GET /jobs/:id/exceptions of the broken job
        assert "bug in version 2" in failed[-1].data["reason"], failed[-1].data
        broken_job = next(e.data["job_id"] for e in failed if e.step is Step.RUNNING)
        assert rest.job(broken_job)["state"] == "CANCELED"  # confirmed before v1 started
        # the broken job failed within the window: the watch ended early, not at 45 s
        watch = failed[-4].at, failed[-3].at  # RUNNING -> FAILED
        assert watch[1] - watch[0] < 45, watch
        assert took < 300

        rolled_id, rolled = deployments[-1]
        assert rolled_id == failed[-1].data["rollback_deployment"]
        assert rolled[0].data["rollback_of"] == failed_id
        assert rolled[0].data["version"] == "1"
        assert (
            rolled[0]
            .data["restored_from"]
            .rstrip("/")
            .endswith(failed[3].data["savepoint"].removeprefix("file:").rstrip("/"))
        )
        current = ledger.current(JOB)
        assert current is not None and current[0] == rolled_id
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
        producer.join(timeout=120)
        assert not producer.is_alive()
        outputs = read_outputs(bootstrap, expect=12_000, timeout=240)
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
    finally:
        cancel_live_jobs(rest)
    # nothing the broken version did was committed; v1 carried on where it was stopped
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)


def test_flowship_rollback_on_the_session_cluster(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(9_000, users=150))
    # 6,000 over 20 s, the last 3,000 (10 s) once the rollback runs: its health watch then
    # judges input instead of waiting out its window on an idle topic
    rolling_back = threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 300.0, 6_000, rolling_back))
    bugfix = Path(__file__).parent / "jobs" / "v1_bugfix.py"
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        producer.start()
        time.sleep(6)
        up = deploy(
            str(bugfix), flink_session_cluster, bootstrap, state, "--upgrade-from", "savepoint"
        )
        assert up.returncode == 0, tail(up.stdout + up.stderr)
        upgraded = ledger.current(JOB)
        assert upgraded is not None and upgraded[1]["version"] == "1.1"
        time.sleep(4)
        rolling_back.set()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowship.cli",
                "rollback",
                JOB,
                "--json",
                "--target",
                flink_session_cluster.rest_url,
                "--kafka-bootstrap",
                bootstrap,
                "--state-dir",
                str(state),
                "--health-window-s",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=500,
            check=False,
        )
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        outcome = json.loads(done.stdout)
        assert (outcome["from_version"], outcome["to_version"]) == ("1.1", "1")
        assert rest.job(upgraded[1]["job_id"])["state"] == "FINISHED"  # stopped, savepoint
        current = ledger.current(JOB)
        assert current is not None and current[0] == outcome["deployment"]
        assert current[1]["version"] == "1" and current[1]["kind"] == "rollback"
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
        steps = [e.step for e in ledger.deployments(JOB)[current[0]]]
        assert steps == [
            Step.PLANNED,
            Step.CHECKED,
            Step.SAVEPOINTING,
            Step.STOPPED,
            Step.SUBMITTED,
            Step.RUNNING,
            Step.STABLE,
        ]
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=9_000, timeout=240)
    finally:
        rolling_back.set()  # never leave the producer waiting
        cancel_live_jobs(rest)
    assert {m.headers["flowship.version"] for m in outputs} == {"1", "1.1"}
    assert_exactly_once(outputs, evs)


def test_rollback_starts_the_previous_version_only_once_the_new_one_is_cancelled(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    """Version 2 stays CANCELLING for a while after its cancel; version 1 waits for CANCELED.

    The REST job list is polled throughout: never two live jobs of the job at once.
    """
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(3_000, users=100))
    ended = ("FINISHED", "CANCELED", "FAILED")
    since = time.time() * 1000
    seen: list[list[tuple[str, str]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                listed = rest.jobs()
            except ClusterError:
                continue  # a slow answer: the next poll counts
            seen.append([(j["jid"], j["state"]) for j in listed
                         if j["start-time"] >= since and j["state"] not in ended])
            time.sleep(0.25)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        produce_clicks(bootstrap, evs[:1_500])
        poller.start()

        def rolled_back() -> bool:  # version 1 runs again: its watch gets the rest as input
            current = ledger.current(JOB)
            return current is not None and bool(current[1].get("rollback_of"))

        feeder = threading.Thread(target=produce_clicks_when,
                                  args=(bootstrap, evs[1_500:], rolled_back), daemon=True)
        feeder.start()
        v2 = deploy(
            str(Path(__file__).parent / "jobs" / "slow_open_v2.py"),
            flink_session_cluster,
            bootstrap,
            state,
            "--upgrade-from",
            "savepoint",
            "--health-window-s",
            "15",
        )
        assert v2.returncode == 6, tail(v2.stdout + v2.stderr)
        feeder.join(timeout=60)
        assert not feeder.is_alive(), "version 1 never ran again"
        outputs = read_outputs(bootstrap, expect=3_000, timeout=240)
        stop.set()
        poller.join(timeout=30)
        failed = list(ledger.deployments(JOB).values())[-2]
        assert "checkpoints" in failed[-1].data["reason"], failed[-1].data
        slow_job = next(e.data["job_id"] for e in failed if e.step is Step.RUNNING)
        cancelling = [jobs for jobs in seen if (slow_job, "CANCELLING") in jobs]
        assert cancelling, "version 2 was never seen CANCELLING: the test proves nothing"
        both = [jobs for jobs in seen if len(jobs) > 1]
        assert both == [], both[:5]
        current = ledger.current(JOB)
        assert current is not None and current[1]["version"] == "1"
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
    finally:
        stop.set()
        cancel_live_jobs(rest)
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)
