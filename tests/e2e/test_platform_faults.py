"""The platform fails under a new version in its health watch: Flink recovers it, no rollback.

v1 -> v2 of the example job on a session cluster of its own, under continuous production. 3 s
into v2's health watch its TaskManager is SIGKILLed (a host lost), and a new one starts 3 s
later. Flink restarts v2 from its latest checkpoint on the new TaskManager by itself; the
deployer waits for that, judges v2 afterwards and finds it stable (exit 0), its ledger entry
naming the platform's failure. Before, the first entry in the exception history rolled v2 back
from the pre-upgrade savepoint: downstream saw hundreds of outputs twice and per-key counts go
backwards. A read_committed consumer checks every input has exactly one output, equal to the
reference (so per-key counts never go backwards). The version's own failures still roll back
at once: tests/e2e/test_local_upgrades.py and tests/unit/test_health_output.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail
from test_cluster_upgrades import cancel_live_jobs, deploy
from test_local_upgrades import JOB

from flowship.deploy.ledger import LocalLedger, merged
from flowship.deploy.machine import Step
from flowship.testing._proc import stop_pid
from flowship.testing.session_cluster import SessionCluster

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(900)]

# the health watch as in production (soak 10 s, 100 inputs), not the suite's quick one
WATCH = ("--health-soak-s", "10", "--health-min-inputs", "100", "--health-window-s", "60")


def _running_at(ledger: LocalLedger, proc: subprocess.Popen, timeout: float = 300) -> float:
    """When the upgrade's new version was recorded RUNNING (its watch starts then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        deployments = list(ledger.deployments(JOB).values())
        if len(deployments) >= 2:
            running = [e for e in deployments[-1] if e.step is Step.RUNNING]
            if running:
                return running[0].at
        time.sleep(0.2)
    pytest.fail("the upgrade never recorded RUNNING")


def test_a_taskmanager_lost_in_the_watch_is_recovered_not_rolled_back(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(12_000, users=200))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 200.0))  # 60 s
    with SessionCluster(tmp_path / "cluster") as cluster, \
            tempfile.TemporaryFile("w+") as out:
        try:
            first = deploy("job.py", cluster, bootstrap, state)
            assert first.returncode == 0, tail(first.stdout + first.stderr)
            producer.start()
            time.sleep(8)
            upgrade = subprocess.Popen(
                [sys.executable, str(EXAMPLE / "job_v2.py"), "--target", cluster.rest_url,
                 "--kafka-bootstrap", bootstrap, "--state-dir", str(state),
                 "--upgrade-from", "savepoint", *WATCH],
                stdout=out, stderr=subprocess.STDOUT, text=True)
            try:
                running_at = _running_at(ledger, upgrade)
                time.sleep(max(running_at + 3 - time.time(), 0))
                killed = cluster.kill_taskmanagers()
                assert killed, "no TaskManager ran"
                time.sleep(3)
                cluster.start_taskmanager()
                code = upgrade.wait(timeout=400)
            finally:
                if upgrade.poll() is None:
                    stop_pid(upgrade.pid, group=False)
            out.seek(0)
            log = out.read()
            assert code == 0, tail(log)
            producer.join(timeout=120)
            outputs = read_outputs(bootstrap, expect=len(evs), timeout=240)
        finally:
            cancel_live_jobs(cluster.rest)
    deployments = list(ledger.deployments(JOB).values())
    assert [e.step for e in deployments[-1]][-1] is Step.STABLE, tail(log)
    data = merged(deployments[-1])
    assert data["version"] == "2"
    assert any("TaskManager" in cause for cause in data["platform_failures"]), data
    assert "Flink recovered it from" in data["reason"]
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert set(version_of.values()) == {1, 2}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))
