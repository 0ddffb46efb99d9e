"""`python job.py --upgrade-from savepoint` on the local target, under continuous production."""

from __future__ import annotations

import json
import shutil
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

from flowship.deploy.ledger import Ledger, LocalLedger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.testing.jobs import JobProcess, job_command

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

JOB = "click-sessions"


def wait_running(ledger: LocalLedger, version: str, timeout: float = 180,
                 stable: bool = False) -> dict:
    """Until ``version`` is the current deployment (and, with ``stable``, recorded STABLE)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = ledger.current(JOB)
        if current is not None and current[1].get("version") == version:
            data = current[1]
            steps = [e.step for e in ledger.deployments(JOB)[current[0]]]
            if (not stable or Step.STABLE in steps) and \
                    FlinkRest(data["rest_url"]).job(data["job_id"])["state"] == "RUNNING":
                return data
        time.sleep(0.5)
    story = [(e.deployment[:8], e.step.value, str(e.data.get("reason", ""))[:300])
             for e in ledger.entries(JOB)] if ledger.root.exists() else []
    raise AssertionError(f"version {version} not RUNNING{' and STABLE' * stable} in {timeout}s; "
                         f"the ledger: {story[-8:]}")


def wait_step(ledger: Ledger, version: str, step: Step, proc: JobProcess,
              timeout: float = 240) -> None:
    """Until the newest deployment of ``version`` has recorded ``step``, or its deployer ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.running():
        for entries in reversed(ledger.deployments(JOB).values()):
            if entries[0].data.get("version") == version:
                if step in [e.step for e in entries]:
                    return
                break
        time.sleep(0.2)
    if proc.running():
        raise AssertionError(f"version {version} did not reach {step.value} in {timeout}s")


def stop_recorded_pids(ledger: LocalLedger) -> None:
    """Stop every job process the ledger recorded (e.g. a rollback's), also after failures."""
    import os

    from flowship.testing._proc import pid_alive, stop_pid

    for entry in ledger.entries(JOB) if ledger.root.exists() else []:
        pid = entry.data.get("pid")
        if pid and pid != os.getpid() and pid_alive(pid):
            stop_pid(pid)


def savepoints(state: Path) -> set[Path]:
    return set(state.glob(f"{JOB}/savepoints/*/savepoint-*"))


def test_three_upgrades_under_continuous_production(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(30_000, users=300))
    # 10,000 at 500/s (20 s) from v1's start, 10,000 once v2 runs, 10,000 once v3 runs: each
    # version gets input however long the steps before it took
    v2_runs, last_version_runs = threading.Event(), threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 500.0, [10_000, 20_000],
                                      [v2_runs, last_version_runs]))

    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    procs = [v1]
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(10)
        v2 = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                        "savepoint").start()
        procs.append(v2)
        wait_running(ledger, "2")
        v2_runs.set()
        assert v1.wait(timeout=60) == 0, tail(v1.output())  # stopped for the upgrade, exit 0

        # an incompatible version is refused before anything stops
        running = wait_running(ledger, "2", stable=True)
        before = savepoints(state)
        refused = subprocess.run(
            job_command(EXAMPLE / "job_v3_incompatible.py", bootstrap, state,
                        "--upgrade-from", "savepoint"),
            capture_output=True, text=True, timeout=300, check=False)
        assert refused.returncode == 5, tail(refused.stdout + refused.stderr)
        assert "unknown_writer_version" in refused.stdout
        assert FlinkRest(running["rest_url"]).job(running["job_id"])["state"] == "RUNNING"
        assert savepoints(state) == before
        last = list(ledger.deployments(JOB).values())[-1]
        assert last[-1].step is Step.REFUSED
        assert last[-1].data["report"]["compatible"] is False

        v3 = JobProcess(EXAMPLE / "job_v3.py", bootstrap, state, "--upgrade-from",
                        "savepoint").start()
        procs.append(v3)
        wait_running(ledger, "3")
        last_version_runs.set()
        wait_running(ledger, "3", stable=True)
        assert v2.wait(timeout=60) == 0, tail(v2.output())
        producer.join(timeout=300)
        assert not producer.is_alive()
        outputs = read_outputs(bootstrap, expect=30_000, timeout=240)
        assert v3.running(), tail(v3.output())
    finally:
        v2_runs.set()  # never leave the producer waiting
        last_version_runs.set()
        for p in procs:
            p.stop()

    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert set(version_of.values()) == {1, 2, 3}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))
    # the ledger tells the story: each upgrade went through every step, in order
    histories = [[e.step for e in entries] for entries in ledger.deployments(JOB).values()]
    upgrade = [Step.PLANNED, Step.CHECKED, Step.SAVEPOINTING, Step.STOPPED, Step.SUBMITTED,
               Step.RUNNING, Step.STABLE]
    assert histories == [[Step.PLANNED, Step.SUBMITTED, Step.RUNNING], upgrade,
                         [Step.PLANNED, Step.REFUSED], upgrade]


def test_upgrade_of_unknown_job_changes_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "job_v2.py"), "--upgrade-from", "savepoint",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "unknown job 'click-sessions'" in done.stderr
    assert not list((tmp_path / "state").rglob("*.jsonl"))


def test_upgrade_with_unreachable_running_version_changes_nothing(
    kafka_broker, tmp_path: Path
) -> None:
    from flowship.testing._proc import free_port

    # Kafka answers (it is checked first): what is unreachable is the running version's REST API
    setup_topics(kafka_broker.bootstrap)

    ledger = LocalLedger(tmp_path / "state" / "ledger")
    manifest = json.loads(subprocess.run(
        [sys.executable, str(EXAMPLE / "job.py"), "--manifest"], capture_output=True,
        text=True, check=True, timeout=120).stdout)
    with ledger.holding(JOB):
        ledger.record(JOB, "d1", Step.PLANNED, version="1", manifest=manifest)
        ledger.record(JOB, "d1", Step.SUBMITTED, rest_url=f"http://127.0.0.1:{free_port()}")
        ledger.record(JOB, "d1", Step.RUNNING, job_id="0" * 32)
    before = (tmp_path / "state" / "ledger" / f"{JOB}.jsonl").read_text()
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "job_v2.py"), "--upgrade-from", "savepoint",
         "--state-dir", str(tmp_path / "state"), "--kafka-bootstrap", kafka_broker.bootstrap],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4, done.stderr
    assert "unreachable" in done.stderr
    assert (tmp_path / "state" / "ledger" / f"{JOB}.jsonl").read_text() == before


@pytest.mark.parametrize("script", ["broken_v2.py", "broken_open_v2.py"])
def test_broken_version_is_rolled_back(script: str, fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=200))
    # the broken version fails only on input it gets once it runs: the second half of the input
    # waits until it runs, however long its start took
    v2_runs = threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 300.0, 3_000, v2_runs))
    broken = Path(__file__).parent / "jobs" / script
    # v1 runs from a copy of its directory that is changed under it before the rollback: the
    # rollback must run the code v1 was deployed with (archived), not what sits there then
    code = tmp_path / "v1-code"
    shutil.copytree(EXAMPLE, code, ignore=shutil.ignore_patterns("__pycache__"))
    v1 = JobProcess(code / "job.py", bootstrap, state).start()
    procs = [v1]
    rollback_pid = None
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(6)
        v2 = JobProcess(broken, bootstrap, state, "--upgrade-from", "savepoint",
                        "--health-window-s", "45").start()
        procs.append(v2)
        wait_step(ledger, "2-broken", Step.RUNNING, v2)
        (code / "job.py").write_text("raise SystemExit('this is not the deployed version 1')\n")
        (code / "common.py").unlink()
        v2_runs.set()
        assert v2.wait(timeout=400) == 6, tail(v2.output())
        assert "rolled back to version 1" in v2.output()
        assert v1.wait(timeout=60) == 0  # the original v1 process was stopped for the upgrade
        data = wait_running(ledger, "1")
        rollback_pid = data["pid"]
        failed = list(ledger.deployments(JOB).values())[-2]
        assert [e.step for e in failed][-4:] == [Step.RUNNING, Step.FAILED, Step.ROLLING_BACK,
                                                 Step.ROLLED_BACK]
        assert "bug in version 2" in failed[-1].data["reason"]
        # the code that runs again is the archive of what was deployed as version 1
        archive = merged(next(iter(ledger.deployments(JOB).values())))["code_archive"]
        assert data["script"] == str(Path(archive["archive"]).with_suffix("") / "job.py")
        assert Path(data["script"]).is_relative_to(state / JOB / "code")
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        v2_runs.set()  # never leave the producer waiting
        for p in procs:
            p.stop()
        stop_recorded_pids(ledger)
    assert rollback_pid is not None
    # nothing the broken version did was committed; v1 carried on where it stopped
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)


def test_concurrent_deploy_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "state" / "ledger")
    lease = ledger.acquire(JOB)  # another deployer (this test) holds the job's lease
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE / "job_v2.py"), "--upgrade-from", "savepoint",
             "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        ledger.release(lease)
    assert done.returncode == 7, done.stderr
    assert "is being deployed by pid" in done.stderr
    assert ledger.entries(JOB) == []
