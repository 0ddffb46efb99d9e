"""A deployer killed on the session cluster, whose job runs on there without it.

Killed during the health watch: the same command again resumes the watch (its window counted
from the recorded RUNNING time, not from zero) and reaches a verdict; meanwhile `flowship status`
shows the verdict open. The moment of the kill comes from a seeded random
(``FLOWSHIP_TEST_SEED`` repeats a run; the seed is printed). Killed the moment the cluster
accepted the new version's job, before RUNNING was recorded: the same command again finds the
job by the id recorded at SUBMITTED and adopts it; no second copy is started. Killed right
after PLANNED, CHECKED, SAVEPOINTING or STOPPED under continuous input: the rerun converges to
one v2 job, exactly once (the crash matrix of tests/e2e/test_deployer_crashes.py, on the
cluster).
"""

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
from test_cluster_upgrades import cancel_live_jobs, deploy
from test_local_upgrades import JOB

from flowship.cli import main as flowship
from flowship.deploy.ledger import FAULT_ENV, JOB_SUBMITTED, LedgerError, LocalLedger
from flowship.deploy.machine import Step
from flowship.testing._proc import spawn, stop_pid

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(900)]

WINDOW = 40.0
#: checkpoints a healthy v2 needs: about 24 s of its watch at 2 s a checkpoint (a kill lands in it)
HEALTHY = "12"
#: checkpoints v2 never completes in its window: judged not healthy when the window ends
NEVER = "1000"


def _upgrade_v2(cluster, bootstrap: str, state: Path, *extra: str) -> list[str]:
    """The command that upgrades the job on ``cluster`` to version 2."""
    return [sys.executable, str(EXAMPLE / "job_v2.py"), "--target", cluster.rest_url,
            "--kafka-bootstrap", bootstrap, "--state-dir", str(state), "--upgrade-from",
            "savepoint", *extra]


def _seed() -> int:
    seed = int(os.environ.get("FLOWSHIP_TEST_SEED") or time.time_ns() % 2**32)
    print(f"FLOWSHIP_TEST_SEED={seed}", file=sys.__stderr__)  # also when capsys captures
    return seed


@pytest.mark.parametrize("verdict", ["stable", "rolled-back"])
def test_rerun_resumes_the_watch_of_a_job_that_outlived_its_deployer(
    verdict: str, fresh_kafka_broker, flink_session_cluster, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(_seed())
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(3_000, users=50))
    watch = ["--health-window-s", f"{WINDOW:.0f}", "--health-checkpoints",
             HEALTHY if verdict == "stable" else NEVER]
    upgrade = _upgrade_v2(flink_session_cluster, bootstrap, state, *watch)
    deployer = None
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        produce_clicks(bootstrap, evs[:1_500])
        read_outputs(bootstrap, expect=1_500, timeout=240)

        log = tmp_path / "deployer.log"
        deployer = spawn(upgrade, log)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            deployment, entries = list(ledger.deployments(JOB).items())[-1]
            if entries[-1].step is Step.RUNNING and entries[0].data.get("version") == "2":
                break
            assert deployer.poll() is None, tail(log.read_text())
            time.sleep(0.1)
        else:
            raise AssertionError("version 2 never reached RUNNING: " + tail(log.read_text()))
        running = entries[-1]
        # anywhere between RUNNING and the verdict: the hand-over's checkpoints, or the watch
        kill_after = rng.uniform(5.0, 20.0)
        time.sleep(max(running.at + kill_after - time.time(), 0.0))
        os.killpg(deployer.pid, signal.SIGKILL)  # the deployer and its JVM, mid-watch
        assert deployer.wait(timeout=30) == -signal.SIGKILL, tail(log.read_text())
        deployer = None
        print(f"killed the deployer {kill_after:.1f}s after RUNNING", file=sys.__stderr__)
        assert ledger.last_step(JOB, deployment) is Step.RUNNING  # no verdict was recorded
        job_id = running.data["job_id"]
        assert rest.job(job_id)["state"] == "RUNNING"  # the job outlived its deployer

        assert flowship(["status", JOB, "--ledger-dir", str(state / "ledger")]) == 0
        assert "RUNNING (watching, verdict open since " in capsys.readouterr().out

        again = deploy("job_v2.py", flink_session_cluster, bootstrap, state,
                       "--upgrade-from", "savepoint", *watch)
        assert "nothing to do" not in again.stderr, tail(again.stderr)
        assert "health verdict open" in again.stderr, tail(again.stderr)
        produce_clicks(bootstrap, evs[1_500:])
        outputs = read_outputs(bootstrap, expect=3_000, timeout=240)
        steps = ledger.deployments(JOB)[deployment]
        judged_after = steps[-1].at - running.at if verdict == "stable" else next(
            e.at for e in steps if e.step is Step.FAILED) - running.at
        alive = [j["jid"] for j in rest.jobs()
                 if j["state"] not in ("FINISHED", "CANCELED", "FAILED")]
        if verdict == "stable":
            assert again.returncode == 0, tail(again.stdout + again.stderr)
            # the same deployment reached its verdict; nothing was started again
            assert steps[-1].step is Step.STABLE, [(e.step, e.data) for e in steps]
            assert steps[-1].data.get("resumed") is True
            assert list(ledger.deployments(JOB))[-1] == deployment
            assert alive == [job_id]
        else:
            assert again.returncode == 6, tail(again.stdout + again.stderr)
            assert [e.step for e in steps][-4:] == [Step.RUNNING, Step.FAILED,
                                                    Step.ROLLING_BACK, Step.ROLLED_BACK]
            assert f"of {NEVER} checkpoints" in steps[-1].data["reason"]
            assert rest.job(job_id)["state"] == "CANCELED"
            current = ledger.current(JOB)
            assert current is not None and current[1]["version"] == "1"
            assert alive == [current[1]["job_id"]]
            # the window counted from RUNNING: judged when it ran out, not a window after the
            # rerun (that would be kill_after + the rerun's start-up + WINDOW)
            assert WINDOW - 1.0 <= judged_after < WINDOW + kill_after, judged_after
        print(f"verdict {judged_after:.1f}s after RUNNING", file=sys.__stderr__)

        assert flowship(["status", JOB, "--ledger-dir", str(state / "ledger")]) == 0
        assert "watching" not in capsys.readouterr().out
    finally:
        if deployer is not None:
            stop_pid(deployer.pid)
        cancel_live_jobs(rest)
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))


def test_rerun_adopts_the_job_its_deployer_submitted_before_dying(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(3_000, users=50))
    upgrade = _upgrade_v2(flink_session_cluster, bootstrap, state)
    ended = ("FINISHED", "CANCELED", "FAILED")
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        produce_clicks(bootstrap, evs[:1_500])
        read_outputs(bootstrap, expect=1_500, timeout=240)

        killed = subprocess.run(upgrade, env={**os.environ, FAULT_ENV: JOB_SUBMITTED},
                                capture_output=True, text=True, timeout=400, check=False)
        assert killed.returncode == -signal.SIGKILL, tail(killed.stdout + killed.stderr)
        deployment, entries = list(ledger.deployments(JOB).items())[-1]
        assert entries[-1].step is Step.SUBMITTED  # it died before RUNNING was recorded
        job_id = entries[-1].data["job_id"]
        deadline = time.monotonic() + 120
        while rest.job(job_id)["state"] != "RUNNING":  # the cluster accepted it under that id
            assert time.monotonic() < deadline, rest.job(job_id)["state"]
            time.sleep(0.5)
        produce_clicks(bootstrap, evs[1_500:])

        again = subprocess.run(upgrade, capture_output=True, text=True, timeout=400,
                               check=False)
        assert again.returncode == 0, tail(again.stdout + again.stderr)
        steps = ledger.deployments(JOB)[deployment]
        assert [e.step for e in steps][-2:] == [Step.RUNNING, Step.STABLE]
        assert steps[-2].data["adopted"] is True and steps[-2].data["job_id"] == job_id
        assert list(ledger.deployments(JOB))[-1] == deployment  # no deployment started again
        alive = [j["jid"] for j in rest.jobs() if j["state"] not in ended]
        assert alive == [job_id]  # one copy of the job: the one the dead deployer submitted
        outputs = read_outputs(bootstrap, expect=3_000, timeout=240)
    finally:
        cancel_live_jobs(rest)
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert 2 in version_of.values()
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))


def _feed(bootstrap: str, evs: list[dict], ledger: LocalLedger, done: threading.Event) -> None:
    """The first 4,500 events at 300/s (15 s, across the kills), the rest once an upgrade
    recorded SAVEPOINTING: input flows across the stop, and version 2's watch judges input
    instead of waiting out its window on a topic version 1 had read to the end (PLANNED and
    CHECKED touch nothing: the stop comes long after the kills)."""
    produce_clicks(bootstrap, evs[:4_500], 300.0)
    while not done.wait(0.2):
        try:
            stopping = any(e.step is Step.SAVEPOINTING for e in ledger.entries(JOB))
        except LedgerError:  # a line read while it is written: read again
            continue
        if stopping:
            produce_clicks(bootstrap, evs[4_500:], 300.0)
            return


@pytest.mark.parametrize("steps", ["PLANNED,CHECKED", "SAVEPOINTING", "STOPPED"])
def test_rerun_after_deployer_killed_at_a_step_converges_on_the_cluster(
    steps: str, fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    """Killed right after recording a step under continuous input; the same command again
    converges: one v2 job on the cluster, exactly once. SAVEPOINTING and STOPPED: the old job
    lives on without its deployer, and outlives a stop the deployer never saw end. PLANNED and
    CHECKED touch nothing, so one v1 job serves both: killed at PLANNED, the same command again
    closes that deployment and carries on, to be killed at CHECKED; the v1 job runs on alone
    through both. SUBMITTED and RUNNING are the tests above."""
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    done = threading.Event()
    producer = threading.Thread(
        target=_feed, args=(bootstrap, evs, LocalLedger(state / "ledger"), done)
    )
    ended = ("FINISHED", "CANCELED", "FAILED")
    upgrade = ["--upgrade-from", "savepoint"]
    killed: list[str] = []  # the deployments the kills left
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        v1_job = ledger.current(JOB)[1]["job_id"]
        producer.start()
        time.sleep(4)
        for step in steps.split(","):
            env = {**os.environ, FAULT_ENV: step}
            crashed = deploy(
                "job_v2.py", flink_session_cluster, bootstrap, state, *upgrade, env=env
            )
            assert crashed.returncode == -signal.SIGKILL, tail(crashed.stdout + crashed.stderr)
            last = ledger.entries(JOB)[-1]
            assert last.step.value == step  # it died right after recording it
            killed.append(last.deployment)
            if step in ("PLANNED", "CHECKED"):  # nothing touched: v1 alone runs on
                alive = [j["jid"] for j in rest.jobs() if j["state"] not in ended]
                assert alive == [v1_job]

        again = deploy("job_v2.py", flink_session_cluster, bootstrap, state, *upgrade)
        assert again.returncode == 0, tail(again.stdout + again.stderr)
        producer.join(timeout=120)
        assert not producer.is_alive(), "no upgrade recorded SAVEPOINTING"
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
        current = ledger.current(JOB)
        assert current is not None and current[1]["version"] == "2"
        alive = [j["jid"] for j in rest.jobs() if j["state"] not in ended]
        assert alive == [current[1]["job_id"]]  # one copy of the job: v2's
        assert rest.job(v1_job)["state"] == "FINISHED"  # stopped with a savepoint
        deployments = ledger.deployments(JOB)
        upgraded = deployments[current[0]]
        assert [e.step for e in upgraded][-3:] == [Step.SUBMITTED, Step.RUNNING, Step.STABLE]
        assert len([e for e in ledger.entries(JOB) if e.step is Step.STOPPED]) == 1
        if steps == "PLANNED,CHECKED":
            # each rerun closed the deployment it found unfinished and planned a new one
            planned, checked = (deployments[d] for d in killed)
            assert [e.step for e in planned] == [Step.PLANNED, Step.FAILED]
            assert [e.step for e in checked] == [Step.PLANNED, Step.CHECKED, Step.FAILED]
            for closed in (planned, checked):
                assert "died before stopping the old version" in closed[-1].data["reason"]
            assert [e.step for e in upgraded] == [
                Step.PLANNED,
                Step.CHECKED,
                Step.SAVEPOINTING,
                Step.STOPPED,
                Step.SUBMITTED,
                Step.RUNNING,
                Step.STABLE,
            ]
            assert list(deployments)[1:] == [*killed, current[0]]  # and nothing else
        else:  # the deployment it died in is the one resumed to the end
            assert killed == [current[0]]
    finally:
        done.set()  # never leave the producer waiting
        cancel_live_jobs(rest)
    version_of = {
        m.value["event_id"]: int(m.headers["flowship.version"]) for m in outputs if m.value
    }
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))
