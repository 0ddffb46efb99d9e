"""A deployer that died after SUBMITTED: the job it submitted is adopted, never started twice.

A session cluster's job outlives its deployer. The engine records the Flink job id at SUBMITTED,
before submitting; the next run asks the cluster about that id. A fake JobManager (a real HTTP
server giving Flink 2.2's answers) stands in for the cluster; the ledger is the real one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_jobmanager import serve

from flowship._ports import free_port
from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.deploy.upgrade import (
    OpenWatch,
    Prepared,
    prepare_upgrade,
    restore_point,
    settle_submitted,
)
from flowship.errors import ClusterError, ConfigError

JOB = "adopted"
RUNS = "a" * 32  # RUNNING on the fake cluster
ENDED = "c" * 32  # CANCELED
BROKEN = "f" * 32  # the JobManager answers 500
GONE = "0" * 32  # never accepted: 404
CHECKPOINT = f"s3://bucket/checkpoints/{RUNS}/chk-9"


@pytest.fixture(scope="module")
def flink() -> Iterator[str]:
    with serve({RUNS: "RUNNING", ENDED: "CANCELED"}, BROKEN, {RUNS: CHECKPOINT}) as url:
        yield url


def _submitted(ledger: LocalLedger, flink: str, job_id: str | None, version: str = "2") -> None:
    """v1 ran (now stopped for the upgrade); v2's deployer died right after SUBMITTED."""
    with ledger.holding(JOB):
        ledger.record(JOB, "d1", Step.PLANNED, version="1")
        ledger.record(JOB, "d1", Step.SUBMITTED, rest_url=flink)
        ledger.record(JOB, "d1", Step.RUNNING, job_id=ENDED, rest_url=flink)
        ledger.record(JOB, "d2", Step.PLANNED, version=version, previous="d1")
        ledger.record(JOB, "d2", Step.CHECKED)
        ledger.record(JOB, "d2", Step.SAVEPOINTING, target="/sp", old_job_id=ENDED,
                      old_rest_url=flink)
        ledger.record(JOB, "d2", Step.STOPPED, savepoint="file:/sp/savepoint-1")
        ids = {"job_id": job_id} if job_id else {}
        ledger.record(JOB, "d2", Step.SUBMITTED, rest_url=flink, restored_from="file:/sp", **ids)


def _steps(ledger: LocalLedger, deployment: str) -> list[Step]:
    return [e.step for e in ledger.deployments(JOB)[deployment]]


def test_a_job_the_cluster_runs_is_adopted(tmp_path: Path, flink: str) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, RUNS)
    with ledger.holding(JOB):
        settle_submitted(ledger, JOB)
    assert _steps(ledger, "d2")[-1] is Step.RUNNING
    running = ledger.deployments(JOB)["d2"][-1].data
    assert (running["job_id"], running["adopted"]) == (RUNS, True)
    current = ledger.current(JOB)
    assert current is not None and current[0] == "d2"


@pytest.mark.parametrize("job_id", [ENDED, GONE], ids=["cancelled", "never-accepted"])
def test_a_job_that_is_not_running_closes_the_deployment(
    tmp_path: Path, flink: str, job_id: str
) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, job_id)
    with ledger.holding(JOB):
        settle_submitted(ledger, JOB, close_dead=False)  # an upgrade resumes it instead
        assert _steps(ledger, "d2")[-1] is Step.SUBMITTED
        settle_submitted(ledger, JOB)
    assert _steps(ledger, "d2")[-1] is Step.FAILED
    reason = ledger.deployments(JOB)["d2"][-1].data["reason"]
    assert job_id in reason and "not running" in reason


def test_a_cluster_that_cannot_tell_changes_nothing(tmp_path: Path, flink: str) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, BROKEN)
    before = ledger.entries(JOB)
    with ledger.holding(JOB), pytest.raises(ClusterError, match="nothing was changed"):
        settle_submitted(ledger, JOB)
    assert ledger.entries(JOB) == before


def test_a_submission_recorded_without_a_job_id_is_left_alone(tmp_path: Path, flink: str) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, None)  # the local target, or a ledger from before job ids
    before = ledger.entries(JOB)
    with ledger.holding(JOB):
        settle_submitted(ledger, JOB)
    assert ledger.entries(JOB) == before


def test_the_upgrade_run_again_watches_the_adopted_job(tmp_path: Path, flink: str) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, RUNS)
    prepared = prepare_upgrade(ledger, JOB, "2", {"version": "2"}, "/jobs/v2.py",
                               tmp_path / "savepoints")
    assert isinstance(prepared, OpenWatch)
    assert (prepared.deployment, prepared.job_id) == ("d2", RUNS)
    assert _steps(ledger, "d2")[-1] is Step.RUNNING  # the verdict is the engine's to record
    ledger.release(prepared.lease)


def test_the_upgrade_run_again_starts_a_job_that_never_came_up_from_its_savepoint(
    tmp_path: Path, flink: str
) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, GONE)
    prepared = prepare_upgrade(ledger, JOB, "2", {"version": "2"}, "/jobs/v2.py",
                               tmp_path / "savepoints")
    assert isinstance(prepared, Prepared)
    assert prepared.savepoint == "file:/sp/savepoint-1"
    # a deployment of its own, with a SUBMITTED (and a job id) of its own
    assert _steps(ledger, "d2")[-1] is Step.FAILED
    assert GONE in ledger.deployments(JOB)["d2"][-1].data["reason"]
    restart = ledger.deployments(JOB)[prepared.deployment]
    assert restart[0].data["restarts"] == "d2" and restart[0].data["version"] == "2"
    ledger.release(prepared.lease)


def test_restore_points_come_from_flinks_record_not_file_times(
    tmp_path: Path, flink: str
) -> None:
    root = tmp_path / "checkpoints"
    # the cluster names the newest checkpoint, wherever it is stored
    assert restore_point({"job_id": RUNS, "rest_url": flink}, root, 0.0) == CHECKPOINT
    # a cluster that does not answer (gone with its process), or that names none: the
    # highest-numbered checkpoint of that job on disk, whatever the files' times say
    for number in (3, 12):
        (root / GONE / f"chk-{number}").mkdir(parents=True)
        (root / GONE / f"chk-{number}" / "_metadata").write_bytes(b"x")
    os.utime(root / GONE / "chk-3" / "_metadata", (2e9, 2e9))  # newer on disk: not chosen
    (root / "other-job" / "chk-99").mkdir(parents=True)
    (root / "other-job" / "chk-99" / "_metadata").write_bytes(b"x")
    closed = f"http://127.0.0.1:{free_port()}"
    for rest_url in (closed, flink):
        found = restore_point({"job_id": GONE, "rest_url": rest_url}, root, 0.0)
        assert found == (root / GONE / "chk-12").as_uri()
    assert restore_point({"job_id": ENDED, "rest_url": flink}, root, 0.0) is None


def test_a_restart_killed_at_submitted_starts_from_what_it_restored(
    tmp_path: Path, flink: str
) -> None:
    """It has no STOPPED and no savepoint of its own (this raised StopIteration before)."""
    ledger = LocalLedger(tmp_path / "ledger")
    _submitted(ledger, flink, None)
    with ledger.holding(JOB):
        ledger.record(JOB, "d2", Step.RUNNING, job_id=ENDED, rest_url=flink)
        ledger.record(JOB, "d2", Step.FAILED, reason="its process is gone")
        ledger.record(JOB, "d3", Step.PLANNED, version="2", previous="d1", restarts="d2",
                      restored_from="file:/cp/chk-7")
        ledger.record(JOB, "d3", Step.SUBMITTED, rest_url=flink, restored_from="file:/cp/chk-7")
    prepared = prepare_upgrade(ledger, JOB, "2", {"version": "2"}, "/jobs/v2.py",
                               tmp_path / "savepoints")
    assert isinstance(prepared, Prepared)
    assert (prepared.deployment, prepared.savepoint) == ("d3", "file:/cp/chk-7")
    ledger.release(prepared.lease)


class NeverStarts(Target):
    """A target whose start must not be reached."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url
        self.started = False

    def start(self, restore: str | None, deployment: str) -> str:
        self.started = True
        return RUNS


def test_a_first_deploy_run_again_adopts_the_job_and_starts_no_second_copy(
    tmp_path: Path, flink: str
) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    with ledger.holding(JOB):
        ledger.record(JOB, "d1", Step.PLANNED, version="1")
        ledger.record(JOB, "d1", Step.SUBMITTED, rest_url=flink, job_id=RUNS)
    target = NeverStarts(flink)
    engine = Engine(ledger, Release(JOB, "1", {"version": "1"}, "/jobs/v1.py"), target,
                    Policy(tmp_path / "state"))
    with pytest.raises(ConfigError, match="already runs"):
        engine.deploy()
    assert not target.started
    assert _steps(ledger, "d1") == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING]
    assert len(ledger.deployments(JOB)) == 1


class FixedIds(Target):
    """A target that fixes its job ids, as the cluster target does."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url
        self.given: list[str] = []

    def new_job_id(self) -> str:
        self.given.append(RUNS)
        return RUNS

    def start(self, restore: str | None, deployment: str) -> str:
        return self.given[-1]


def test_the_job_id_is_recorded_before_the_submission(tmp_path: Path, flink: str) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    engine = Engine(ledger, Release(JOB, "1", {"version": "1"}, "/jobs/v1.py"), FixedIds(flink),
                    Policy(tmp_path / "state", bounded=True))
    assert engine.deploy() == 0
    entries = ledger.deployments(JOB)
    (_deployment, steps), = entries.items()
    submitted = next(e for e in steps if e.step is Step.SUBMITTED)
    assert submitted.data["job_id"] == RUNS
    assert [e.step for e in steps] == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING]
