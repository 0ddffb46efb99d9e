"""`python job_v2.py --upgrade-from savepoint --strategy blue-green`: real broker, real Flink.

Version 1 of the example runs on the local target, reading 6 input partitions under continuous
input (30,000 events). One command upgrades it blue-green: version 1.2 (it differs on 1 % of
records, one field) starts dark beside it, is judged healthy while dark, is promoted at agreed
cuts and version 1 is retired. Checked with an independent read_committed consumer: every
input's output appears in production exactly once, from the version the recorded cut says, and
per user in input order. A broken version is stopped while still dark: production never sees
one of its outputs and version 1 was never stopped; `--strategy canary` with a version whose
outputs differ beyond the diff policy gives its partitions back at agreed cuts, then stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, produce_clicks, read_outputs, tail
from test_canary import KEY, PARTITIONS, check_production, routed, wait_for

from flowship.deploy.ledger import FAULT_ENV, LocalLedger, merged
from flowship.deploy.machine import Step
from flowship.testing.jobs import JobProcess, run_job
from flowship.testing.kafka_io import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.jvm, pytest.mark.timeout(900)]

JOB = "click-sessions"
JOBS = Path(__file__).parent / "jobs"
EVENTS = list(events.clicks(30_000, users=60))
FIRST = 4000
BLUE_GREEN = ("--upgrade-from", "savepoint", "--strategy", "blue-green")


def test_blue_green_upgrade_promotes_and_retires_under_continuous_input(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, {"clicks": PARTITIONS, "session-stats": 4, "clicks.dlq": 1})
    produce_clicks(bootstrap, EVENTS[:FIRST])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    # judged by its health and by its outputs: 1 % of them differ, the policy allows 5 %
    v2 = JobProcess(
        JOBS / "one_percent_v2.py",
        bootstrap,
        state,
        *BLUE_GREEN,
        "--health-window-s",
        "20",
        "--max-diff-rate",
        "0.05",
        "--min-pairs",
        "500",
    )
    v2.log = state / "blue-green.log"
    # the rest at 400 events/s (about 65 s): input flows through every step of the upgrade
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, EVENTS[FIRST:], 400.0))
    try:
        first = wait_for("version 1 RUNNING", lambda: ledger.current(JOB), 180, v1.output)
        read_outputs(bootstrap, expect=FIRST, timeout=180)
        producer.start()
        v2.start()

        def promoted() -> object:
            assert v2.running(), tail(v2.output())
            found = ledger.current(JOB)
            return found if found is not None and found[1]["version"] == "1.2" else None

        deployment, data = wait_for("version 1.2 the job's deployment", promoted, 400, v2.output)
        # version 1 was stopped with a savepoint once it had committed everything below the cut
        assert v1.wait(timeout=120) == 0, tail(v1.output())
        assert data["kind"] == "promoted" and v2.running()
        old = ledger.deployments(JOB)[first[0]]
        assert old[-1].step is Step.RETIRED and old[-1].data.get("savepoint"), old[-1].data
        (beside,) = ledger.deployments(KEY).values()
        steps = [e.step.value for e in beside]
        assert steps == [
            "PLANNED", "SUBMITTED", "RUNNING", "STABLE", "ROUTING", "ROUTED", "PROMOTED"
        ], steps
        facts = merged(beside)
        assert facts["kind"] == "blue-green" and facts["dark"] is True, facts
        assert facts["checkpoints"] >= 2, facts
        verdict = facts["verdict"]
        assert verdict["outcome"] == "pass" and verdict["pairs"] >= 500, verdict
        assert 0 < verdict["differing"] < 0.05 * verdict["pairs"], verdict
        changes = routed(ledger, beside[0].deployment)
        assert [c["serve"] for c in changes] == ["all"], changes
        assert deployment == facts["became"]
        # the same command again: the version runs, nothing to do
        again = run_job(JOBS / "one_percent_v2.py", bootstrap, state, *BLUE_GREEN, timeout=300)
        assert again.returncode == 0, tail(again.stdout + again.stderr)
        assert "nothing to do" in again.stderr, again.stderr
        producer.join(timeout=300)

        # production, read independently: every input exactly once, from the version the cut
        # says, and per user in input order
        outputs = read_outputs(bootstrap, expect=len(EVENTS), timeout=300)
        served = check_production(outputs, EVENTS, changes)
        assert served[("1", True)] + served[("1", False)] > 0, served
        assert served[("1.2", True)] + served[("1.2", False)] > 0, served
    finally:
        if producer.is_alive():
            producer.join(timeout=300)
        v2.stop()
        v1.stop()


def test_versions_judged_bad_dark_or_as_a_canary_are_stopped_and_production_holds(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, {"clicks": PARTITIONS, "session-stats": 4, "clicks.dlq": 1})
    evs = EVENTS[:24_000]
    produce_clicks(bootstrap, evs[:FIRST])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    # about 67 s of input at 300 events/s: it flows while both versions run dark
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs[FIRST:], 300.0))
    try:
        first = wait_for("version 1 RUNNING", lambda: ledger.current(JOB), 180, v1.output)
        read_outputs(bootstrap, expect=FIRST, timeout=180)
        before = (ledger.root / f"{JOB}.jsonl").read_bytes()

        # bad input: the strategy without --upgrade-from savepoint, or with --shadow
        for extra, says in (
            (("--strategy", "blue-green"), "give --upgrade-from savepoint"),
            ((*BLUE_GREEN, "--shadow"), "does not go with --shadow"),
        ):
            bad = run_job(JOBS / "one_percent_v2.py", bootstrap, state, *extra, timeout=300)
            assert bad.returncode == 2, tail(bad.stdout + bad.stderr)
            assert says in bad.stderr, bad.stderr
        assert (ledger.root / f"{JOB}.jsonl").read_bytes() == before
        assert not (ledger.root / f"{KEY}.jsonl").exists()

        producer.start()
        broken = run_job(
            JOBS / "broken_v2.py",
            bootstrap,
            state,
            *BLUE_GREEN,
            "--health-window-s",
            "45",
            "--restart-attempts",
            "0",
            timeout=600,
        )
        assert broken.returncode == 6, tail(broken.stdout + broken.stderr)
        assert "was judged not healthy" in broken.stderr, tail(broken.stderr)
        assert "production never saw an output" in broken.stderr
        (beside,) = ledger.deployments(KEY).values()
        assert [e.step for e in beside] == [
            Step.PLANNED, Step.SUBMITTED, Step.RUNNING, Step.RETIRED
        ]
        reason = beside[-1].data["reason"]
        assert "not healthy" in reason and "while it ran dark" in reason, reason
        # version 1 was never stopped: still the job's deployment, still running
        assert ledger.current(JOB) == first and v1.running(), tail(v1.output())

        # as a canary on partitions 0 and 3: healthy, but its outputs differ on 1 % of the
        # inputs and the policy allows 0.2 %: it gives the partitions back, then stops
        differs = run_job(
            JOBS / "one_percent_v2.py",
            bootstrap,
            state,
            "--upgrade-from",
            "savepoint",
            "--strategy",
            "canary",
            "--canary",
            "0,3",
            "--health-window-s",
            "15",
            "--max-diff-rate",
            "0.002",
            "--min-pairs",
            "1000",
            timeout=600,
        )
        assert differs.returncode == 10, tail(differs.stdout + differs.stderr)
        assert "was judged diff verdict fail" in differs.stderr, tail(differs.stderr)
        deployment, judged = list(ledger.deployments(KEY).items())[-1]
        assert [e.step.value for e in judged] == [
            "PLANNED", "SUBMITTED", "RUNNING", "ROUTING", "ROUTED", "ROUTING", "ROUTED", "RETIRED"
        ], judged
        assert judged[0].data["kind"] == "canary-upgrade"
        reason = judged[-1].data["reason"]
        assert "diff verdict fail" in reason and "as a canary" in reason, reason
        changes = routed(ledger, deployment)
        assert [c["serve"] for c in changes] == [[0, 3], []], changes
        assert ledger.current(JOB) == first and v1.running(), tail(v1.output())
        producer.join(timeout=300)
        outputs = read_outputs(bootstrap, expect=len(evs), timeout=300)
    finally:
        if producer.is_alive():
            producer.join(timeout=300)
        v1.stop()
    # every input once, from the version the cuts say: the canary's for 0 and 3 in between
    served = check_production(outputs, evs, changes)
    assert served[("1.2", True)] > 0 and served[("1.2", False)] == 0, served


@pytest.mark.cluster
def test_blue_green_deployer_killed_twice_carries_on_on_a_session_cluster(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    """Killed once it runs dark (before its watch), then once judged healthy: each rerun of the
    same command carries on from the ledger, and production still gets every output once."""
    from test_cluster_upgrades import cancel_live_jobs

    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    create_topics(bootstrap, {"clicks": PARTITIONS, "session-stats": 4, "clicks.dlq": 1})
    produce_clicks(bootstrap, EVENTS[:1000])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    flags = ["--target", flink_session_cluster.rest_url, "--kafka-bootstrap", bootstrap]
    flags += ["--state-dir", str(state)]
    flowing = threading.Event()
    sent = [1000]

    def feed() -> None:  # about 250 events/s until told to stop
        while not flowing.is_set() and sent[0] < len(EVENTS):
            produce_clicks(bootstrap, EVENTS[sent[0] : sent[0] + 50])
            sent[0] += 50
            time.sleep(0.2)

    producer = threading.Thread(target=feed)

    def run(
        script: Path, *extra: str, fault: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *flags, *extra],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
            env={**os.environ, FAULT_ENV: fault} if fault else None,
        )

    upgrade = (JOBS / "one_percent_v2.py", *BLUE_GREEN, "--health-window-s", "20")
    try:
        first = run(EXAMPLE / "job.py")
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        read_outputs(bootstrap, expect=1000, timeout=180)
        current = ledger.current(JOB)
        assert current is not None
        producer.start()
        steps: list[str] = []
        for fault in ("RUNNING", "STABLE", None):
            done = run(*upgrade, fault=fault)
            if fault is None:
                assert done.returncode == 0, tail(done.stdout + done.stderr)
            else:
                assert done.returncode == -signal.SIGKILL, tail(done.stdout + done.stderr)
            (beside,) = ledger.deployments(KEY).values()
            steps = [e.step.value for e in beside]
            if fault is not None:
                assert steps[-1] == fault, steps
                # killed: version 1.2 runs on, dark; version 1 serves production
                assert rest.job(merged(beside)["job_id"])["state"] == "RUNNING"
                assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
            if fault != "RUNNING":
                assert "carrying on" in done.stderr, tail(done.stderr)
        assert steps == [
            "PLANNED", "SUBMITTED", "RUNNING", "STABLE", "ROUTING", "ROUTED", "PROMOTED"
        ], steps
        facts = merged(beside)
        # the second run took the watch up again, counted from RUNNING
        assert facts["dark"] is True and facts["resumed"] is True, facts
        assert rest.job(current[1]["job_id"])["state"] == "FINISHED"  # stopped, savepoint
        taken = ledger.current(JOB)
        assert taken is not None and taken[1]["version"] == "1.2"
        assert taken[1]["job_id"] == facts["job_id"]
        assert rest.job(facts["job_id"])["state"] == "RUNNING"
        changes = routed(ledger, beside[0].deployment)
        # one promotion (and a re-cut at the retirement if the input had gone idle below it)
        assert {c["serve"] for c in changes} == {"all"}, changes

        flowing.set()
        producer.join(timeout=120)
        evs = EVENTS[: sent[0]]
        outputs = read_outputs(bootstrap, expect=len(evs), timeout=300)
        served = check_production(outputs, evs, changes)
        assert served[("1", True)] + served[("1", False)] > 0, served
        assert served[("1.2", True)] + served[("1.2", False)] > 0, served
    finally:
        flowing.set()
        if producer.is_alive():
            producer.join(timeout=300)
        cancel_live_jobs(rest)
