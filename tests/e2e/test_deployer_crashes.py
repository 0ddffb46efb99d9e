"""The deployer is killed (SIGKILL) right after each step it records; the same command again
converges to one running version, nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail
from test_local_upgrades import JOB, stop_recorded_pids, wait_running

from flowship.deploy.ledger import FAULT_ENV, LocalLedger
from flowship.deploy.machine import Step
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


@pytest.mark.parametrize("step", ["PLANNED", "CHECKED", "SAVEPOINTING", "STOPPED", "SUBMITTED",
                                  "RUNNING"])
def test_rerun_after_deployer_killed_converges(step: str, fresh_kafka_broker,
                                               tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 20 s
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    jobs = [v1]
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(4)
        crashing = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                              "savepoint", env={**os.environ, FAULT_ENV: step}).start()
        jobs.append(crashing)
        assert crashing.wait(timeout=180) == -9, tail(crashing.output())
        steps = [e.step.value for e in ledger.entries(JOB)]
        assert steps[-1] == step  # it died right after recording the step

        again = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                           "savepoint").start()
        jobs.append(again)
        wait_running(ledger, "2", stable=True)
        assert v1.wait(timeout=60) == 0, tail(v1.output())  # the old version stopped, once
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
        assert again.running(), tail(again.output())
        # exactly one version runs: every deployment but the current one is finished
        current = ledger.current(JOB)
        assert current is not None and current[1]["version"] == "2"
        # no other v2 deployment is left looking alive (v1's is superseded by the upgrade's STOPPED)
        other_v2 = [d for d, es in ledger.deployments(JOB).items()
                    if d != current[0] and es[0].data.get("version") == "2"
                    and es[-1].step in (Step.RUNNING, Step.STABLE)]
        assert other_v2 == []
    finally:
        for job in jobs:
            job.stop()
        stop_recorded_pids(ledger)
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))


def test_upgrade_from_latest_checkpoint_after_the_running_version_died(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    import signal

    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 20 s
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    jobs = [v1]
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(8)  # a few checkpoints
        assert v1.pid is not None
        os.killpg(v1.pid, signal.SIGKILL)  # the running version dies hard, JVM included
        assert v1.wait(timeout=30) == -9
        alive = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                           "savepoint").start()
        jobs.append(alive)
        assert alive.wait(timeout=120) == 4  # its REST API is gone: use a checkpoint instead
        v2 = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                        "latest-checkpoint").start()
        jobs.append(v2)
        wait_running(ledger, "2", stable=True)
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        for job in jobs:
            job.stop()
        stop_recorded_pids(ledger)
    upgrade = list(ledger.deployments(JOB).values())[-1]
    assert [e.step for e in upgrade] == [Step.PLANNED, Step.CHECKED, Step.STOPPED,
                                         Step.SUBMITTED, Step.RUNNING, Step.STABLE]
    assert "/chk-" in upgrade[0].data["from_checkpoint"]
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))
