"""The deployer is killed (SIGKILL) right after each step it records, or at a random moment of
its health watch; the same command again converges to one running version, nothing lost,
nothing duplicated. The random moment comes from a seeded random (``FLOWSHIP_TEST_SEED``
repeats a run; the seed is printed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail
from test_local_upgrades import JOB, stop_recorded_pids, wait_running

from flowship.cli import main as flowship
from flowship.deploy.ledger import FAULT_ENV, Entry, LocalLedger
from flowship.deploy.machine import Step
from flowship.testing.jobs import JobProcess, job_command

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

JOBS = Path(__file__).parent / "jobs"


def _seed() -> int:
    seed = int(os.environ.get("FLOWSHIP_TEST_SEED") or time.time_ns() % 2**32)
    print(f"FLOWSHIP_TEST_SEED={seed}", file=sys.__stderr__)  # also when capsys captures
    return seed


def _wait_step(ledger: LocalLedger, version: str, step: Step, proc: JobProcess,
               timeout: float = 240) -> tuple[str, Entry]:
    """Until the newest deployment of ``version`` records ``step``: its id and that entry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployments = ledger.deployments(JOB) if ledger.root.exists() else {}
        for deployment, entries in reversed(deployments.items()):
            if entries[0].data.get("version") == version:
                if entries[-1].step is step:
                    return deployment, entries[-1]
                break
        assert proc.running(), tail(proc.output())
        time.sleep(0.1)
    raise AssertionError(f"version {version} never reached {step.value}: {tail(proc.output())}")


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
        crashing_pid = crashing.pid
        assert crashing.wait(timeout=180) == -9, tail(crashing.output())
        steps = [e.step.value for e in ledger.entries(JOB)]
        assert steps[-1] == step  # it died right after recording the step
        if step == "SUBMITTED":
            # the job id and the process are recorded before the start: a rerun finds that
            # job's checkpoints by its id and knows its process (pid and start) is gone
            submitted = ledger.entries(JOB)[-1].data
            assert len(submitted["job_id"]) == 32 and submitted["pid"] == crashing_pid
            assert submitted.get("pid_start")  # on Linux: boot id and start time

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


def test_rerun_after_deployer_killed_during_the_health_watch(
    fresh_kafka_broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL at a random moment of the watch; on the local target the job goes with it.

    The rerun finds the verdict open on a job that is gone: it restarts the version from its
    latest checkpoint (recorded as a deployment that ``restarts`` the killed one) and watches
    it to STABLE; `flowship status` meanwhile shows the verdict open.
    """
    rng = random.Random(_seed())
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 20 s
    # 6 checkpoints of 2 s after the hand-over: the watch lasts 12 s at least
    watch = ("--health-window-s", "60", "--health-checkpoints", "6")
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    jobs = [v1]
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(4)
        crashing = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                              "savepoint", *watch).start()
        jobs.append(crashing)
        killed, running = _wait_step(ledger, "2", Step.RUNNING, crashing)
        kill_after = rng.uniform(0.5, 10.0)
        time.sleep(max(running.at + kill_after - time.time(), 0.0))
        assert crashing.pid is not None
        os.killpg(crashing.pid, signal.SIGKILL)  # the deployer and its JVM, mid-watch
        assert crashing.wait(timeout=60) == -signal.SIGKILL
        print(f"killed the deployer {kill_after:.1f}s after RUNNING", file=sys.__stderr__)
        assert ledger.last_step(JOB, killed) is Step.RUNNING  # killed before any verdict
        assert flowship(["status", JOB, "--ledger-dir", str(state / "ledger")]) == 0
        assert "RUNNING (watching, verdict open since " in capsys.readouterr().out

        again = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state, "--upgrade-from",
                           "savepoint", *watch).start()
        jobs.append(again)
        wait_running(ledger, "2", stable=True)
        assert v1.wait(timeout=60) == 0, tail(v1.output())
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
        assert again.running(), tail(again.output())
        killed_entries = ledger.deployments(JOB)[killed]
        assert killed_entries[-1].step is Step.FAILED  # its process is gone: restarted
        current = ledger.current(JOB)
        assert current is not None and current[1]["restarts"] == killed
        assert flowship(["status", JOB, "--ledger-dir", str(state / "ledger")]) == 0
        assert "watching" not in capsys.readouterr().out
    finally:
        for job in jobs:
            job.stop()
        stop_recorded_pids(ledger)
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))


def test_restarted_version_found_unhealthy_rolls_back_to_the_pre_upgrade_savepoint(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    """Killed at RUNNING, restarted by the rerun, then unhealthy: back to v1, as recorded.

    The restarted deployment has no savepoint of its own; the rollback takes the one the
    upgrade it restarts recorded (it crashed with a KeyError before).
    """
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 20 s
    broken = JOBS / "broken_open_v2.py"
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    jobs = [v1]
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(4)
        crashing = JobProcess(broken, bootstrap, state, "--upgrade-from", "savepoint",
                              env={**os.environ, FAULT_ENV: "RUNNING"}).start()
        jobs.append(crashing)
        assert crashing.wait(timeout=180) == -signal.SIGKILL, tail(crashing.output())
        assert v1.wait(timeout=60) == 0, tail(v1.output())  # stopped for the upgrade
        again = subprocess.run(
            job_command(broken, bootstrap, state, "--upgrade-from", "savepoint",
                        "--health-window-s", "45"),
            capture_output=True, text=True, timeout=400, check=False)
        assert again.returncode == 6, tail(again.stdout + again.stderr)
        assert "rolled back to version 1" in again.stderr
        wait_running(ledger, "1")
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        for job in jobs:
            job.stop()
        stop_recorded_pids(ledger)
    deployments = list(ledger.deployments(JOB).items())
    (upgrade_id, upgrade), (restarted_id, restarted), (rollback_id, rollback) = deployments[-3:]
    assert [e.step for e in upgrade][-2:] == [Step.RUNNING, Step.FAILED]
    stop_savepoint = next(e.data["savepoint"] for e in upgrade if e.step is Step.STOPPED)
    assert restarted[0].data["restarts"] == upgrade_id
    assert [e.step for e in restarted] == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING,
                                           Step.FAILED, Step.ROLLING_BACK, Step.ROLLED_BACK]
    assert "bug in version 2" in restarted[-1].data["reason"]
    rolling_back = restarted[-2].data
    assert rolling_back["from_savepoint"] == stop_savepoint.removeprefix("file:")
    assert rollback[0].data["rollback_of"] == restarted_id
    assert rollback[0].data["version"] == "1"
    assert restarted[-1].data["rollback_deployment"] == rollback_id
    # nothing the broken version did was committed; v1 carried on where it was stopped
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)
