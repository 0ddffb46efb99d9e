"""A new version that fails to start after the old one was stopped never leaves the job down.

The running version 1 holds state of an operator flowship was not told of (``seen-users``, a
plain PyFlink operator). The example's version 2 has no such operator: the gate sees that in the
stream graphs and refuses (exit 5) with version 1 untouched. So does it a version 2 that keeps
the operator but sets its max parallelism: version 1 left it to Flink, and the gate reads the
value Flink gave it (128) from the running job, which Flink would refuse to restore into 256. A
version 2 that needs a jar the host does not have passes the gate, and Flink refuses to start
it: after version 1 was stopped with a savepoint. The deployer starts version 1 again from it,
records the rollback, and exits 6 (docs/reference/cli.md).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail
from test_local_upgrades import JOB, stop_recorded_pids, wait_running

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.testing.jobs import JobProcess, job_command

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

V1 = Path(__file__).parent / "jobs" / "undeclared_state_v1.py"
V2_MAX_PARALLELISM = Path(__file__).parent / "jobs" / "max_parallelism_v2.py"
V2_MISSING_JAR = Path(__file__).parent / "jobs" / "missing_jar_v2.py"


def test_version_that_does_not_start_is_replaced_by_the_previous_one(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 20 s
    v1 = JobProcess(V1, bootstrap, state).start()
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(6)
        before = list(ledger.deployments(JOB))
        # the example's version 2 lacks seen-users: refused before anything stops
        refused = subprocess.run(
            job_command(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from", "savepoint"),
            capture_output=True, text=True, timeout=400, check=False)
        assert refused.returncode == 5, tail(refused.stdout + refused.stderr)
        assert "[graph_operator_removed] operator seen-users" in refused.stdout, refused.stdout
        assert v1.running()  # never stopped
        assert ledger.current(JOB)[0] == before[-1]
        # max parallelism 256 where the running job has 128 (its graph left it to Flink)
        refused = subprocess.run(
            job_command(V2_MAX_PARALLELISM, bootstrap, state, "--upgrade-from", "savepoint"),
            capture_output=True, text=True, timeout=400, check=False)
        assert refused.returncode == 5, tail(refused.stdout + refused.stderr)
        assert "[max_parallelism_changed] operator seen-users" in refused.stdout, refused.stdout
        assert "the running version's is 128" in refused.stdout, refused.stdout
        assert v1.running()  # never stopped
        assert ledger.current(JOB)[0] == before[-1]
        v2 = subprocess.run(
            job_command(V2_MISSING_JAR, bootstrap, state, "--upgrade-from", "savepoint"),
            capture_output=True, text=True, timeout=400, check=False)
        assert v2.returncode == 6, tail(v2.stdout + v2.stderr)
        assert "rolled back to version 1" in v2.stderr, tail(v2.stderr)
        assert v1.wait(timeout=60) == 0  # the original v1 process was stopped for the upgrade
        wait_running(ledger, "1")
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        v1.stop()
        stop_recorded_pids(ledger)
    deployments = list(ledger.deployments(JOB).items())
    (failed_id, failed), (rollback_id, rollback) = deployments[-2:]
    assert [e.step for e in failed] == [Step.PLANNED, Step.CHECKED, Step.SAVEPOINTING,
                                        Step.STOPPED, Step.SUBMITTED, Step.FAILED,
                                        Step.ROLLING_BACK, Step.ROLLED_BACK]
    assert "did not start" in failed[-1].data["reason"]
    savepoint = failed[3].data["savepoint"].removeprefix("file:")
    assert failed[-2].data["from_savepoint"] == savepoint
    assert rollback[0].data["rollback_of"] == failed_id
    assert rollback[0].data["version"] == "1"
    assert rollback[0].data["restored_from"].rstrip("/").endswith(savepoint.rstrip("/"))
    assert failed[-1].data["rollback_deployment"] == rollback_id
    # version 2 never ran; version 1 carried on from where it was stopped
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)
