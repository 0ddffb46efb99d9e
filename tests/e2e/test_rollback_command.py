"""`flowship rollback JOB` and `python job.py --rollback` with the real broker and real Flink."""

from __future__ import annotations

import collections
import json
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
    produce_clicks,
    produce_clicks_gated,
    read_outputs,
    setup_topics,
    tail,
)
from test_local_upgrades import JOB, savepoints, stop_recorded_pids, wait_running

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.savepoints import check_metadata
from flowship.testing._proc import free_port, pid_alive, stop_pid
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

BUGFIX = Path(__file__).parent / "jobs" / "v1_bugfix.py"
UPGRADE = [
    Step.PLANNED,
    Step.CHECKED,
    Step.SAVEPOINTING,
    Step.STOPPED,
    Step.SUBMITTED,
    Step.RUNNING,
    Step.STABLE,
]


def rollback(
    bootstrap: str, state: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`flowship rollback click-sessions --json` with the job's settings; (process, outcome)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowship.cli",
            "rollback",
            JOB,
            "--json",
            "--kafka-bootstrap",
            bootstrap,
            "--state-dir",
            str(state),
            "--rest-port",
            str(free_port()),
            "--health-window-s",
            "45",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    try:
        outcome = json.loads(done.stdout)
    except json.JSONDecodeError:
        outcome = {}
    return done, outcome


def test_rollback_returns_to_the_previous_version(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(12_000, users=200))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 40 s
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    procs = [v1]
    pids: list[int] = []
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(6)
        v11 = JobProcess(BUGFIX, bootstrap, state, "--upgrade-from", "savepoint").start()
        procs.append(v11)
        upgraded = wait_running(ledger, "1.1", stable=True)
        assert v1.wait(timeout=60) == 0, tail(v1.output())
        time.sleep(4)

        done, outcome = rollback(bootstrap, state)
        pids += [outcome["pid"]] if outcome.get("pid") else []
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        assert (outcome["from_version"], outcome["to_version"]) == ("1.1", "1")
        assert v11.wait(timeout=60) == 0, tail(v11.output())  # stopped with a savepoint
        running = wait_running(ledger, "1", stable=True)
        assert FlinkRest(running["rest_url"]).job(running["job_id"])["state"] == "RUNNING"

        deployments = list(ledger.deployments(JOB).items())
        rolled_id, rolled = deployments[-1]
        assert outcome["deployment"] == rolled_id
        assert [e.step for e in rolled] == UPGRADE
        upgrade_id = deployments[-2][0]
        assert rolled[0].data["kind"] == "rollback"
        assert rolled[0].data["rollback_of"] == upgrade_id
        assert rolled[0].data["rollback_to"] == deployments[0][0]
        # the code v1 was deployed with, from its archive (not whatever is at its path now)
        archive = deployments[0][1][0].data["code_archive"]
        assert rolled[0].data["script"] == str(Path(archive["archive"]).with_suffix("") / "job.py")
        assert rolled[0].data["code_archive"] == archive
        assert rolled[0].data["code_changed"] is False
        assert rolled[3].data["savepoint"] == outcome["savepoint"]
        assert upgraded["job_id"] == rolled[2].data["old_job_id"]
        # the history shows it as a rollback
        history = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowship.cli",
                "history",
                JOB,
                "--ledger-dir",
                str(state / "ledger"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert f"{rolled_id}  version 1 (rollback of {upgrade_id}): PLANNED" in history.stdout
        # the savepoints the tests made are Flink's: the metadata check accepts them all
        for sp in savepoints(state):
            assert check_metadata(sp / "_metadata", str(sp)) >= 1

        # a second rollback goes one more version back: v1 was the first deploy, so none
        again, _ = rollback(bootstrap, state)
        assert again.returncode == 2, tail(again.stderr)
        assert "no previous version" in again.stderr
        assert [e.step for e in ledger.deployments(JOB)[rolled_id]] == UPGRADE

        producer.join(timeout=120)
        assert not producer.is_alive()
        outputs = read_outputs(bootstrap, expect=12_000, timeout=240)
        assert FlinkRest(running["rest_url"]).job(running["job_id"])["state"] == "RUNNING"
    finally:
        for p in procs:
            p.stop()
        for pid in pids:
            if pid_alive(pid):
                stop_pid(pid)
        stop_recorded_pids(ledger)
    versions = collections.Counter(m.headers["flowship.version"] for m in outputs)
    assert set(versions) == {"1", "1.1"}, versions
    # 1.1 has version 1's logic: one output per input event, equal to the reference
    assert_exactly_once(outputs, evs)


def test_rollback_the_previous_version_cannot_read_is_refused(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    """v2 -> v3 (a migrate v2 does not know); rolling back is refused, nothing stops. Then
    `--from-pre-upgrade-savepoint`: v2 from its own savepoint, replaying what v3 processed."""
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(9_000, users=150))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 300.0))  # 30 s
    v2 = JobProcess(EXAMPLE / "job_v2.py", bootstrap, state).start()
    procs = [v2]
    pids: list[int] = []
    try:
        wait_running(ledger, "2")
        producer.start()
        time.sleep(6)
        v3 = JobProcess(
            EXAMPLE / "job_v3.py", bootstrap, state, "--upgrade-from", "savepoint"
        ).start()
        procs.append(v3)
        running = wait_running(ledger, "3", stable=True)
        v3_deployment = ledger.current(JOB)[0]
        assert v2.wait(timeout=60) == 0, tail(v2.output())
        before = savepoints(state)
        entries = len(ledger.entries(JOB))

        # `python job_v3.py --rollback` (the job's own flag) and `flowship rollback` alike
        refused = subprocess.run(
            [
                sys.executable,
                str(EXAMPLE / "job_v3.py"),
                "--rollback",
                "--kafka-bootstrap",
                bootstrap,
                "--state-dir",
                str(state),
                "--rest-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert refused.returncode == 5, tail(refused.stdout + refused.stderr)
        assert "type_mismatch" in refused.stdout
        assert "--from-pre-upgrade-savepoint" in refused.stderr
        assert "replays the input" in refused.stderr
        assert FlinkRest(running["rest_url"]).job(running["job_id"])["state"] == "RUNNING"
        assert savepoints(state) == before  # no savepoint taken
        last = list(ledger.deployments(JOB).values())[-1]
        assert [e.step for e in last] == [Step.PLANNED, Step.REFUSED]
        assert last[0].data["rollback_of"] == ledger.current(JOB)[0]
        assert last[-1].data["report"]["compatible"] is False
        assert len(ledger.entries(JOB)) == entries + 2
        time.sleep(4)

        # the opt-in way back: v2 restarts from the savepoint v2 was stopped with
        done, outcome = rollback(bootstrap, state, "--from-pre-upgrade-savepoint")
        pids += [outcome["pid"]] if outcome.get("pid") else []
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        assert outcome["replay"] is True and outcome["to_version"] == "2"
        assert v3.wait(timeout=60) == 0, tail(v3.output())
        back = wait_running(ledger, "2", stable=True)
        replayed = list(ledger.deployments(JOB).values())[-1]
        upgrade = list(ledger.deployments(JOB).values())[1]
        stopped = next(e for e in replayed if e.step is Step.STOPPED).data
        assert "flowship.replaces=" + v3_deployment in stopped["downstream"]
        assert stopped["savepoint"] == next(
            e.data["savepoint"] for e in upgrade if e.step is Step.STOPPED
        )
        assert (
            check_metadata(
                Path(stopped["old_savepoint"].removeprefix("file:")) / "_metadata", "kept"
            )
            >= 1
        )
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=9_000, timeout=240)
        v3_outputs = sum(m.headers["flowship.version"] == "3" for m in outputs)
        outputs = read_outputs(bootstrap, expect=9_000 + v3_outputs, timeout=240)
        assert FlinkRest(back["rest_url"]).job(back["job_id"])["state"] == "RUNNING"
    finally:
        for p in procs:
            p.stop()
        for pid in pids:
            if pid_alive(pid):
                stop_pid(pid)
        stop_recorded_pids(ledger)
    # every event has an output; exactly those v3 had processed were processed again by v2
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for m in outputs:
        by_id[m.value["event_id"]].append(m.headers["flowship.version"])
    assert set(by_id) == {e["event_id"] for e in evs}
    v3_ids = {i for i, vs in by_id.items() if "3" in vs}
    assert v3_ids, "v3 processed nothing"
    assert {i for i, vs in by_id.items() if len(vs) > 1} == v3_ids
    assert all(sorted(by_id[i]) == ["2", "3"] for i in v3_ids)
    # the replay's outputs name the deployment whose outputs they follow; the first v2's do not
    replaces = {m.headers.get("flowship.replaces") for m in outputs
                if m.headers["flowship.version"] == "2" and m.value["event_id"] in v3_ids}
    assert replaces == {v3_deployment}
    assert any("flowship.replaces" not in m.headers for m in outputs
               if m.headers["flowship.version"] == "2")


@pytest.mark.parametrize("step", ["PLANNED", "STOPPED"])
def test_rollback_killed_after_a_step_converges_when_run_again(
    step: str, fresh_kafka_broker, tmp_path: Path
) -> None:
    import os

    from flowship.deploy.ledger import FAULT_ENV

    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(6_000, users=100))
    # 4,000 events over 20 s, the last 2,000 (10 s) once the rollback runs again: its health
    # watch then judges input instead of waiting out its window on an idle topic
    again = threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 200.0, 4_000, again))
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    procs = [v1]
    pids: list[int] = []
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(4)
        v11 = JobProcess(BUGFIX, bootstrap, state, "--upgrade-from", "savepoint").start()
        procs.append(v11)
        wait_running(ledger, "1.1", stable=True)
        assert v1.wait(timeout=60) == 0, tail(v1.output())

        crashed, _ = rollback(bootstrap, state, env={**os.environ, FAULT_ENV: step})
        assert crashed.returncode == -9, tail(crashed.stdout + crashed.stderr)
        first_id, first = list(ledger.deployments(JOB).items())[-1]
        assert first[-1].step.value == step and first[0].data["kind"] == "rollback"

        again.set()
        done, outcome = rollback(bootstrap, state)
        pids += [outcome["pid"]] if outcome.get("pid") else []
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        assert v11.wait(timeout=60) == 0, tail(v11.output())  # stopped once, with a savepoint
        wait_running(ledger, "1", stable=True)
        deployments = ledger.deployments(JOB)
        if step == "PLANNED":  # nothing was touched: closed, and a new rollback went ahead
            assert [e.step for e in deployments[first_id]] == [Step.PLANNED, Step.FAILED]
            assert outcome["deployment"] != first_id
        else:  # the current version was stopped: the same rollback was resumed from STOPPED
            assert outcome["deployment"] == first_id
        assert [e.step for e in deployments[outcome["deployment"]]] == UPGRADE
        assert len([e for e in ledger.entries(JOB) if e.step is Step.SAVEPOINTING]) == 2
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        again.set()  # never leave the producer waiting
        for p in procs:
            p.stop()
        for pid in pids:
            if pid_alive(pid):
                stop_pid(pid)
        stop_recorded_pids(ledger)
    assert_exactly_once(outputs, evs)


def test_rollback_of_an_unknown_job_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "job_v2.py"), "--rollback", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "unknown job 'click-sessions'" in done.stderr
    assert not state.exists()  # no ledger directory, no lease: nothing at all
    both = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "job_v2.py"),
            "--rollback",
            "--upgrade-from",
            "savepoint",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert both.returncode == 2, both.stderr
    assert "--rollback goes alone" in both.stderr
