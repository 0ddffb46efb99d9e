"""`flowship rollback` / `--rollback`: what the ledger says to go back to, and bad input."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from flowship.cli import main
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.deploy.rollback import plan_rollback, version_before
from flowship.errors import ConfigError


def _gone_pid() -> int:
    """The pid of a process that has ended (and been reaped): a local job that is dead."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


#: a local deployment's recorded process, gone: its REST port refused means dead
GONE = _gone_pid()


@pytest.fixture(autouse=True)
def _unconfigure_logging() -> Iterator[None]:
    # `flowship rollback` configures structlog for stderr, which is pytest's capture here
    yield
    structlog.reset_defaults()


UPGRADE = (
    Step.PLANNED,
    Step.CHECKED,
    Step.SAVEPOINTING,
    Step.STOPPED,
    Step.SUBMITTED,
    Step.RUNNING,
    Step.STABLE,
)


def _deploy(
    ledger: LocalLedger,
    d: str,
    version: str,
    previous: str | None = None,
    steps: tuple[Step, ...] = UPGRADE,
    **planned: object,
) -> None:
    for step in steps:
        data: dict[str, object] = {}
        if step is Step.PLANNED:
            data = {
                "version": version,
                "script": f"/jobs/v{version}.py",
                "manifest": {"version": version},
                **planned,
            }
            if previous:
                data["previous"] = previous
        if step is Step.STOPPED:
            data = {"savepoint": f"file:///sp/{d}"}
        if step is Step.SUBMITTED:
            data = {"rest_url": "http://127.0.0.1:1"}
        if step is Step.RUNNING:
            data = {"job_id": d * 4, "pid": GONE}
        with ledger.holding("jobx"):
            ledger.record("jobx", d, step, **data)


FIRST = (Step.PLANNED, Step.SUBMITTED, Step.RUNNING)


def test_before_is_the_previous_upgrade_and_rollback_is_undo(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    _deploy(ledger, "d1", "1", steps=FIRST)
    _deploy(ledger, "d2", "2", "d1")
    _deploy(ledger, "d3", "3", "d2")
    deps = ledger.deployments("jobx")
    assert version_before(deps, "d3") == "d2"
    assert version_before(deps, "d2") == "d1"
    assert version_before(deps, "d1") is None
    plan = plan_rollback(ledger, "jobx")
    assert (plan.current, plan.target, plan.version, plan.script) == (
        "d3",
        "d2",
        "2",
        "/jobs/v2.py",
    )
    # v2 was stopped for the upgrade to v3 with d3's savepoint
    assert plan.pre_upgrade_savepoint == "file:///sp/d3"
    # a rollback of d3 (back to v2) is undone by going one more version back: to v1
    _deploy(ledger, "r1", "2", "d3", rollback_of="d3", kind="rollback")
    deps = ledger.deployments("jobx")
    assert version_before(deps, "r1") == "d1"
    plan = plan_rollback(ledger, "jobx")
    assert (plan.current, plan.target, plan.pre_upgrade_savepoint) == ("r1", "d1", "file:///sp/d2")
    # an automatic rollback (a restore from PATH with rollback_of, no previous) counts the same
    _deploy(ledger, "r2", "1", steps=FIRST, rollback_of="r1")
    assert version_before(ledger.deployments("jobx"), "r2") is None


def test_refused_rollback_is_not_current(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    _deploy(ledger, "d1", "1", steps=FIRST)
    _deploy(ledger, "d2", "2", "d1")
    _deploy(ledger, "r1", "1", "d2", steps=(Step.PLANNED, Step.REFUSED), rollback_of="d2")
    plan = plan_rollback(ledger, "jobx")
    assert (plan.current, plan.target) == ("d2", "d1")


def test_unknown_job_no_previous_and_nothing_running_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["rollback", "jobx", "--state-dir", str(state)]) == 2
    assert "unknown job 'jobx'" in capsys.readouterr().err
    assert not state.exists()

    ledger = LocalLedger(state / "ledger")
    _deploy(ledger, "d1", "1", steps=FIRST)
    before = (state / "ledger" / "jobx.jsonl").read_text()
    assert main(["rollback", "jobx", "--state-dir", str(state), "--json"]) == 2
    out = capsys.readouterr()
    assert "no previous version" in out.err
    assert json.loads(out.out)["exit_code"] == 2
    _deploy(ledger, "d2", "2", "d1")
    before = (state / "ledger" / "jobx.jsonl").read_text()
    # d2's local mini-cluster (REST on port 1) is gone: nothing runs to roll back
    assert main(["rollback", "jobx", "--ledger-dir", str(state / "ledger")]) == 2
    err = capsys.readouterr().err
    assert "nothing running to roll back" in err and "file:///sp/d2" in err
    assert (state / "ledger" / "jobx.jsonl").read_text() == before
    assert not (state / "ledger" / "jobx.lease").exists()


def test_a_held_lease_makes_rollback_busy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = LocalLedger(tmp_path)
    _deploy(ledger, "d1", "1", steps=FIRST)
    lease = ledger.acquire("jobx")
    try:
        assert main(["rollback", "jobx", "--ledger-dir", str(tmp_path)]) == 7
    finally:
        ledger.release(lease)
    assert "is being deployed by pid" in capsys.readouterr().err


def test_invalid_settings_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollback", "jobx", "--ledger-dir", str(tmp_path), "--rest-port", "x"]) == 2
    assert "rest_port" in capsys.readouterr().err


def test_plan_without_ledger_entries_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown job"):
        plan_rollback(LocalLedger(tmp_path), "nope")


def test_json_outcome_is_the_only_thing_on_stdout(tmp_path: Path) -> None:
    import subprocess
    import sys

    ledger = LocalLedger(tmp_path)
    _deploy(ledger, "d1", "1", steps=FIRST)
    _deploy(ledger, "d2", "2", "d1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowship.cli",
            "rollback",
            "jobx",
            "--ledger-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 2


def test_a_rollback_that_died_before_stopping_is_closed_and_planned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps a rollback records, without Flink: the REST stop and the start are stubbed."""
    from test_check_upgrade import manifest

    from flowship.deploy import rollback as rb
    from flowship.deploy.rest import FlinkRest

    ledger = LocalLedger(tmp_path)
    v1, v2 = manifest(job="jobx", version="1"), manifest(job="jobx", version="2")
    _deploy(ledger, "d1", "1", steps=FIRST, manifest=v1)
    _deploy(ledger, "d2", "2", "d1", manifest=v2)
    _deploy(ledger, "r1", "1", "d2", steps=(Step.PLANNED,), rollback_of="d2", kind="rollback")
    monkeypatch.setattr(rb, "_is_running", lambda data: True)
    monkeypatch.setattr(rb, "script_manifest", lambda script, flags: v1)
    # no code on disk here: the archive is tested in test_archive.py
    monkeypatch.setattr(rb, "runnable_script", lambda data, version: str(data["script"]))
    stopped: list[str] = []

    def stop(self: FlinkRest, job_id: str, target: object) -> str:
        stopped.append(job_id)
        return "file:///sp/new"

    monkeypatch.setattr(FlinkRest, "stop_with_savepoint", stop)
    started: list[str] = []
    monkeypatch.setattr(
        rb.Rollback,
        "_start_previous",
        lambda self, d, script, version, frm: started.append(d) or rb.Outcome("jobx", 0, "ok"),
    )
    outcome = rb.Rollback(ledger, "jobx", tmp_path / "state").run()
    assert outcome.exit_code == 0
    deployments = ledger.deployments("jobx")
    assert [e.step for e in deployments["r1"]] == [Step.PLANNED, Step.FAILED]
    new = started[0]
    assert [e.step for e in deployments[new]] == [
        Step.PLANNED,
        Step.CHECKED,
        Step.SAVEPOINTING,
        Step.STOPPED,
    ]
    planned = deployments[new][0].data
    assert (planned["kind"], planned["rollback_of"], planned["rollback_to"]) == (
        "rollback",
        "d2",
        "d1",
    )
    assert stopped == ["d2" * 4]
    assert deployments[new][-1].data["savepoint"] == "file:///sp/new"
    # run again: the deployment at STOPPED is handed to the previous script, nothing re-stopped
    started.clear()
    rb.Rollback(ledger, "jobx", tmp_path / "state").run()
    assert started == [new] and stopped == ["d2" * 4]


def test_stop_is_taken_again_while_tasks_are_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowship.deploy import upgrade
    from flowship.errors import ClusterError

    monkeypatch.setattr(upgrade.time, "sleep", lambda s: None)
    calls: list[str] = []

    class Rest:
        def stop_with_savepoint(self, job_id: str, target: object) -> str:
            calls.append(job_id)
            if len(calls) < 3:
                msg = (
                    "stop-with-savepoint of job j failed: CheckpointException: ... Failure "
                    "reason: Not all required tasks are currently running."
                )
                raise ClusterError(msg)
            return "file:///sp/1"

    assert upgrade.stop_with_savepoint(Rest(), "j", Path("/sp")) == "file:///sp/1"  # type: ignore[arg-type]
    assert calls == ["j", "j", "j"]

    class Broken:
        def stop_with_savepoint(self, job_id: str, target: object) -> str:
            raise ClusterError("unreachable")

    with pytest.raises(ClusterError, match="unreachable"):
        upgrade.stop_with_savepoint(Broken(), "j", Path("/sp"))  # type: ignore[arg-type]


def test_the_previous_version_starts_where_the_current_one_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = LocalLedger(tmp_path)
    _deploy(ledger, "d1", "1", steps=FIRST)
    _deploy(ledger, "d2", "2", "d1")  # local: RUNNING recorded the job process's pid
    before = (tmp_path / "jobx.jsonl").read_text()
    args = ["rollback", "jobx", "--ledger-dir", str(tmp_path)]
    assert main([*args, "--target", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "runs on the local target" in err and "--target local" in err
    # a session-cluster deployment (no pid) needs its own URL as --target
    with ledger.holding("jobx"):
        ledger.record(
            "jobx",
            "d3",
            Step.PLANNED,
            version="3",
            script="/jobs/v3.py",
            manifest={"version": "3"},
            previous="d2",
        )
        ledger.record("jobx", "d3", Step.SUBMITTED, rest_url="http://flink:8081")
        ledger.record("jobx", "d3", Step.RUNNING, job_id="c" * 32)
    before = (tmp_path / "jobx.jsonl").read_text()
    assert main(args) == 2
    assert "--target http://flink:8081" in capsys.readouterr().err
    assert main([*args, "--target", "http://other:8081"]) == 2
    assert "on the session cluster http://flink:8081" in capsys.readouterr().err
    assert (tmp_path / "jobx.jsonl").read_text() == before
