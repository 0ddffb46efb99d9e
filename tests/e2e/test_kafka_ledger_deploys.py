"""A real job deployed, upgraded and rolled back with the Kafka ledger (`--ledger kafka://`):
automatically (a broken version), then by `flowship rollback --ledger kafka://`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import (
    EXAMPLE,
    assert_exactly_once,
    produce_clicks_gated,
    read_outputs,
    setup_topics,
    tail,
)
from test_local_upgrades import wait_step
from test_rollback_command import BUGFIX, UPGRADE

from flowship.cli import main as flowship
from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.testing._proc import free_port, pid_alive, stop_pid
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

JOB = "click-sessions"


def wait_running(
    ledger: KafkaLedger, version: str, timeout: float = 180, stable: bool = False
) -> dict:
    """Until ``version`` is the current deployment (and, with ``stable``, recorded STABLE)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = ledger.current(JOB)
        if current is not None and current[1].get("version") == version:
            data = current[1]
            steps = [e.step for e in ledger.deployments(JOB)[current[0]]]
            job = FlinkRest(data["rest_url"]).job(data["job_id"])
            if job["state"] == "RUNNING" and (not stable or Step.STABLE in steps):
                return data
        time.sleep(0.5)
    raise AssertionError(f"version {version} not RUNNING{' and STABLE' * stable} in {timeout}s")


def start_rollback(bootstrap: str, state: Path, url: str, out: Path) -> subprocess.Popen[str]:
    """`flowship rollback click-sessions --json --ledger URL` with the job's settings, in a
    process group of its own; its stdout goes to ``out``.json, its stderr to ``out``.log."""
    argv = [
        sys.executable,
        "-m",
        "flowship.cli",
        "rollback",
        JOB,
        "--json",
        "--ledger",
        url,
        "--kafka-bootstrap",
        bootstrap,
        "--state-dir",
        str(state),
        "--rest-port",
        str(free_port()),
        "--health-window-s",
        "45",
    ]
    with out.with_suffix(".json").open("w") as stdout, out.with_suffix(".log").open("w") as err:
        return subprocess.Popen(argv, stdout=stdout, stderr=err, text=True, start_new_session=True)


def test_broken_version_is_rolled_back_with_the_kafka_ledger(
    fresh_kafka_broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 -> 2-broken, rolled back to v1 automatically; then v1 -> 1.1 -> `flowship rollback`.

    Right after the automatic rollback, `flowship rollback` is refused by design: it undoes
    (a rollback of a rollback goes one more version back), and the version rolled back to was
    the job's first deploy. So it runs once an upgrade to 1.1 (v1's state schema) ran.
    """
    bootstrap = fresh_kafka_broker.bootstrap
    url = f"kafka://{bootstrap}"
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = KafkaLedger.from_url(url)
    evs = list(events.clicks(12_000, users=200))
    # the broken version fails only on input for a key with restored state: the second quarter
    # of the input waits until it runs (when all of it came before, v2 was judged STABLE on the
    # few records v1 left unread); the third and the fourth wait until 1.1 and then the
    # rollback to v1 are about to stop the version that runs, so that input flows across
    # each stop and every version's watch judges input
    v2_runs, v11_checked, rollback_checked = gates = [threading.Event() for _ in range(3)]
    producer = threading.Thread(
        target=produce_clicks_gated, args=(bootstrap, evs, 300.0, [3_000, 6_000, 9_000], gates)
    )
    broken = Path(__file__).parent / "jobs" / "broken_v2.py"
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state, "--ledger", url).start()
    procs = [v1]
    rollback_pid = None
    command = None
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(5)
        upgrade = ("--upgrade-from", "savepoint", "--health-window-s", "45", "--ledger", url)
        v2 = JobProcess(broken, bootstrap, state, *upgrade).start()
        procs.append(v2)
        wait_step(ledger, "2-broken", Step.RUNNING, v2)
        v2_runs.set()
        assert v2.wait(timeout=400) == 6, tail(v2.output())
        assert "rolled back to version 1" in v2.output()
        assert v1.wait(timeout=60) == 0
        rollback_pid = wait_running(ledger, "1")["pid"]
        failed = list(ledger.deployments(JOB).values())[-2]
        assert [e.step for e in failed][-4:] == [
            Step.RUNNING,
            Step.FAILED,
            Step.ROLLING_BACK,
            Step.ROLLED_BACK,
        ]
        auto_id = failed[-1].data["rollback_deployment"]
        assert list(ledger.deployments(JOB))[-1] == auto_id

        # `flowship rollback` now: v1 came back by undoing 2-broken, and v1 was the first
        # deploy; nothing before it, nothing stopped, nothing recorded
        entries = len(ledger.entries(JOB))
        command = start_rollback(bootstrap, state, url, tmp_path / "refused")
        assert command.wait(timeout=120) == 2, (tmp_path / "refused.log").read_text()
        assert "no previous version" in (tmp_path / "refused.log").read_text()
        command = None
        assert len(ledger.entries(JOB)) == entries
        assert wait_running(ledger, "1", timeout=10)["pid"] == rollback_pid

        # v1 -> 1.1 (a code fix: v1 can read its state), then back with the Kafka ledger
        v11 = JobProcess(BUGFIX, bootstrap, state, *upgrade).start()
        procs.append(v11)
        wait_step(ledger, "1.1", Step.CHECKED, v11)
        v11_checked.set()
        wait_running(ledger, "1.1", stable=True)
        upgrade_id = ledger.current(JOB)[0]
        deadline = time.monotonic() + 60
        while pid_alive(rollback_pid):  # the v1 the automatic rollback started: stopped, once
            assert time.monotonic() < deadline, f"v1 (pid {rollback_pid}) still runs"
            time.sleep(0.5)

        command = start_rollback(bootstrap, state, url, tmp_path / "rollback")
        deadline = time.monotonic() + 240
        while not rollback_checked.is_set():
            assert command.poll() is None, (tmp_path / "rollback.log").read_text()
            assert time.monotonic() < deadline, "the rollback never recorded CHECKED"
            last = list(ledger.deployments(JOB).values())[-1]
            if last[0].data.get("kind") == "rollback" and Step.CHECKED in [e.step for e in last]:
                rollback_checked.set()
            time.sleep(0.2)
        done = command.wait(timeout=500)
        command = None
        assert done == 0, tail((tmp_path / "rollback.log").read_text())
        outcome = json.loads((tmp_path / "rollback.json").read_text())
        assert (outcome["from_version"], outcome["to_version"]) == ("1.1", "1")
        assert v11.wait(timeout=60) == 0, tail(v11.output())  # stopped with a savepoint
        running = wait_running(ledger, "1", stable=True)
        assert running["pid"] == outcome["pid"]  # the v1 the rollback started, RUNNING

        # the Kafka ledger records it: a rollback of the 1.1 upgrade, to the v1 the automatic
        # rollback had started (the version before 1.1), through every step of an upgrade
        deployments = list(ledger.deployments(JOB).items())
        rolled_id, rolled = deployments[-1]
        assert outcome["deployment"] == rolled_id == ledger.current(JOB)[0]
        assert [e.step for e in rolled] == UPGRADE
        assert rolled[0].data["kind"] == "rollback"
        assert rolled[0].data["rollback_of"] == upgrade_id
        assert rolled[0].data["rollback_to"] == auto_id
        assert rolled[0].data["version"] == "1"
        assert rolled[3].data["savepoint"] == outcome["savepoint"]
        assert flowship(["history", JOB, "--ledger", url]) == 0
        history = capsys.readouterr().out
        steps = " -> ".join(step.value for step in UPGRADE)
        assert f"{rolled_id}  version 1 (rollback of {upgrade_id}): {steps}" in history

        producer.join(timeout=120)
        assert not producer.is_alive()
        outputs = read_outputs(bootstrap, expect=12_000, timeout=240)
        assert FlinkRest(running["rest_url"]).job(running["job_id"])["state"] == "RUNNING"
    finally:
        for gate in gates:
            gate.set()  # never leave the producer waiting
        if command is not None and command.poll() is None:
            stop_pid(command.pid)
        for p in procs:
            p.stop()
        for entry in ledger.entries(JOB):
            pid = entry.data.get("pid")
            if pid and pid != os.getpid() and pid_alive(pid):
                stop_pid(pid)
        ledger.close()
    assert rollback_pid is not None
    # 2-broken committed nothing; 1.1 has version 1's logic: one output per input, as v1's
    assert {m.headers["flowship.version"] for m in outputs} == {"1", "1.1"}
    assert_exactly_once(outputs, evs)
    # everything is in the topic, nothing in the directory ledger; any host reads it
    assert not list(state.rglob("*.jsonl"))
    assert flowship(["status", JOB, "--ledger", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"]["version"] == "1"
    assert status["current"]["deployment"] == rolled_id
