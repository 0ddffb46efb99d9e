"""Where the ledger's job is alive, or may be, nothing is started: never two copies of a job.

Every caller of the one liveness helper (:mod:`flowship.deploy.alive`) that could start a copy of
a job: ``--upgrade-from latest-checkpoint``, an upgrade run again after its deployer died (its
deployment at RUNNING or SUBMITTED), a first deploy, and the dry run's ``latest-checkpoint``.
Each meets the ledger's job in a state Flink may still run it from (``RESTARTING``,
``CREATED``) and behind a REST API that does not answer (a closed port on a session cluster, a
closed port whose local job process still runs, a port that accepts and never answers). Each
must refuse with its message and start nothing: no request but GETs reached the fake
JobManager (a submission or a stop is a POST), the target's start was never called, the
ledger has no new deployment, and the job's lease was given back.

A fake JobManager (a real HTTP server with Flink 2.2's answers) stands in for the cluster; the
ledger is the real one. Controls show the same set-up does start a version whose job is dead,
so the checks above are not vacuous.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_jobmanager import serve
from test_check_upgrade import manifest

import flowship.deploy.alive as alive_module
from flowship._ports import free_port
from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.upgrade import AlreadyDeployed, OpenWatch, Prepared, prepare_upgrade
from flowship.errors import ClusterError, ConfigError
from flowship.job._dry_run import _obtain_state

JOB = "guarded"
RESTARTING = "b" * 32
CREATED = "d" * 32
CANCELED = "c" * 32
BROKEN = "f" * 32  # the JobManager answers 500
STATES = {RESTARTING: "RESTARTING", CREATED: "CREATED", CANCELED: "CANCELED"}
CHECKPOINTS = {job_id: f"file:///checkpoints/{job_id}/chk-9" for job_id in STATES}

#: the job's Flink state when the cluster answers
ALIVE = ["RESTARTING", "CREATED"]
#: its REST API does not answer
NO_ANSWER = ["closed port", "closed port, its process runs", "silent port"]


@dataclass
class Cluster:
    url: str
    requests: list[str]

    def changes(self) -> list[str]:
        """Every request that was not a GET: a submission, a savepoint, a stop, a cancel."""
        return [r for r in self.requests if not r.startswith("GET ")]


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[Cluster]:
    requests: list[str] = []
    with serve(STATES, BROKEN, CHECKPOINTS, requests=requests) as url:
        yield Cluster(url, requests)


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    module_cluster.requests.clear()
    return module_cluster


class QuickRest(FlinkRest):
    """The liveness helper's REST client, patient for half a second instead of 3 to 10."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        super().__init__(url, timeout=min(timeout, 0.5))


@pytest.fixture
def where(
    request: pytest.FixtureRequest, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Where the ledger's job runs (``rest_url``, ``job_id``, ``pid``), by the test's param."""
    kind: str = request.param
    if kind in ALIVE:
        job_id = next(j for j, state in STATES.items() if state == kind)
        yield {"rest_url": cluster.url, "job_id": job_id}
    elif kind == "closed port":  # a session cluster that is down: the job may come back
        yield {"rest_url": f"http://127.0.0.1:{free_port()}", "job_id": RESTARTING}
    elif kind == "closed port, its process runs":  # the local target's job process lives on
        process = subprocess.Popen(["sleep", "30"])
        try:
            yield {
                "rest_url": f"http://127.0.0.1:{free_port()}",
                "job_id": RESTARTING,
                "pid": process.pid,
            }
        finally:
            process.kill()
            process.wait()
    elif kind == "silent port":  # accepts connections (the kernel does), never answers
        monkeypatch.setattr(alive_module, "FlinkRest", QuickRest)
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            yield {"rest_url": f"http://127.0.0.1:{silent.getsockname()[1]}", "job_id": RESTARTING}
    elif kind == "CANCELED":
        yield {"rest_url": cluster.url, "job_id": CANCELED}
    elif kind == "closed port, its process is gone":
        done = subprocess.Popen(["true"])
        done.wait()
        yield {"rest_url": f"http://127.0.0.1:{free_port()}", "job_id": RESTARTING, "pid": done.pid}
    else:
        raise AssertionError(kind)


class Started(Exception):
    """A version was started: what these tests must never see (but the controls)."""


class Submits(Target):
    """A session-cluster target: its start submits to the cluster (``POST /jobs``)."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url
        self.starts: list[str | None] = []

    def start(self, restore: str | None, deployment: str) -> str:
        self.starts.append(restore)
        submit = urllib.request.Request(f"{self.rest_url}/jobs", data=b"{}", method="POST")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(submit, timeout=2.0).close()
        raise Started(f"deployment {deployment} started from {restore}")


@dataclass
class Setup:
    ledger: LocalLedger
    engine: Engine
    target: Submits
    policy: Policy
    script: str

    def prepare(self) -> Prepared | OpenWatch:
        """The upgrade to version 2 up to its start (the engine starts what this returns)."""
        p = self.policy
        return prepare_upgrade(self.ledger, JOB, "2", manifest(job=JOB, version="2"), self.script,
                               p.savepoints(JOB), p.checkpoints(JOB))


@pytest.fixture
def setup(tmp_path: Path, cluster: Cluster) -> Setup:
    script = tmp_path / "job" / "v2.py"
    script.parent.mkdir()
    script.write_text("VERSION = '2'\n")
    ledger = LocalLedger(tmp_path / "ledger")
    target = Submits(cluster.url)
    policy = Policy(tmp_path / "state")
    release = Release(JOB, "2", manifest(job=JOB, version="2"), str(script))
    return Setup(ledger, Engine(ledger, release, target, policy), target, policy, str(script))


def _checkpoint_on_disk(setup: Setup, job_id: str) -> None:
    """A retained checkpoint of ``job_id``: a start from it would find it (were it allowed)."""
    root = setup.policy.checkpoints(JOB)
    assert isinstance(root, Path)
    (root / job_id / "chk-3").mkdir(parents=True)
    (root / job_id / "chk-3" / "_metadata").write_bytes(b"x")


def _running(ledger: LocalLedger, where: dict[str, Any], version: str = "1") -> None:
    """Version ``version`` deployed as d1, its Flink job ``where``."""
    with ledger.holding(JOB):
        ledger.record(JOB, "d1", Step.PLANNED, version=version,
                      manifest=manifest(job=JOB, version=version), script=f"/jobs/v{version}.py")
        ledger.record(JOB, "d1", Step.SUBMITTED, **where)
        ledger.record(JOB, "d1", Step.RUNNING, **where)


def _upgraded(ledger: LocalLedger, cluster: Cluster, where: dict[str, Any],
              last: Step = Step.RUNNING) -> None:
    """v1 ran as d1 and was stopped; v2 (d2) was started, then its deployer died at ``last``."""
    _running(ledger, {"rest_url": cluster.url, "job_id": CANCELED})
    with ledger.holding(JOB):
        ledger.record(JOB, "d2", Step.PLANNED, version="2", manifest=manifest(job=JOB, version="2"),
                      script="/jobs/v2.py", previous="d1")
        ledger.record(JOB, "d2", Step.CHECKED)
        ledger.record(JOB, "d2", Step.SAVEPOINTING, target="/sp", old_job_id=CANCELED,
                      old_rest_url=cluster.url)
        ledger.record(JOB, "d2", Step.STOPPED, savepoint="file:///sp/savepoint-1")
        ledger.record(JOB, "d2", Step.SUBMITTED, restored_from="file:///sp/savepoint-1", **where)
        if last is not Step.SUBMITTED:
            ledger.record(JOB, "d2", Step.RUNNING, **where)
        if last is Step.STABLE:
            ledger.record(JOB, "d2", Step.STABLE)


def _nothing_started(setup: Setup, cluster: Cluster, before: list[Any]) -> None:
    assert setup.target.starts == [], "the target's start was called"
    assert cluster.changes() == [], "a submission (or a stop) reached the JobManager"
    assert setup.ledger.entries(JOB) == before, "the ledger changed"
    assert not (setup.ledger.root / f"{JOB}.lease").exists(), "the lease was not given back"
    setup.ledger.release(setup.ledger.acquire(JOB))  # free for the next deployer


def _asked(cluster: Cluster, where: dict[str, Any]) -> None:
    """The fake JobManager was asked about the job (when it is the one that answers)."""
    if where["rest_url"] == cluster.url:
        assert f"GET /jobs/{where['job_id']}" in cluster.requests


# --- --upgrade-from latest-checkpoint ------------------------------------------------------


@pytest.mark.parametrize("where", ALIVE + NO_ANSWER, indirect=True)
def test_latest_checkpoint_is_refused_while_the_running_version_may_run(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _running(setup.ledger, where)
    _checkpoint_on_disk(setup, where["job_id"])
    before = setup.ledger.entries(JOB)
    if where["rest_url"] == cluster.url:
        state = STATES[where["job_id"]]
        with pytest.raises(ConfigError, match=rf"is alive \({state}\)") as refused:
            setup.engine.upgrade(from_checkpoint=True)
        assert "upgrade it with --upgrade-from savepoint" in str(refused.value)
    else:
        cannot_tell = "cannot tell whether the running version"
        with pytest.raises(ClusterError, match=cannot_tell) as refused:
            setup.engine.upgrade(from_checkpoint=True)
        assert "nothing was changed" in str(refused.value)
    if "pid" in where:
        assert f"its process {where['pid']} runs but its REST API" in str(refused.value)
    _asked(cluster, where)
    _nothing_started(setup, cluster, before)


@pytest.mark.parametrize("where", ["CANCELED", "closed port, its process is gone"],
                         indirect=True)
def test_control_latest_checkpoint_starts_a_version_whose_job_is_dead(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _running(setup.ledger, where)
    _checkpoint_on_disk(setup, where["job_id"])
    with pytest.raises(Started):
        setup.engine.upgrade(from_checkpoint=True)
    assert len(setup.target.starts) == 1
    assert cluster.changes() == ["POST /jobs"]
    assert len(setup.ledger.deployments(JOB)) == 2


# --- an upgrade run again: its deployment at RUNNING ---------------------------------------


@pytest.mark.parametrize("where", ALIVE, indirect=True)
def test_an_upgrade_run_again_watches_its_alive_job_and_starts_nothing(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _upgraded(setup.ledger, cluster, where)
    before = setup.ledger.entries(JOB)
    prepared = setup.prepare()
    try:
        assert isinstance(prepared, OpenWatch)  # the verdict is taken up again, nothing else
        assert (prepared.deployment, prepared.job_id) == ("d2", where["job_id"])
    finally:
        setup.ledger.release(prepared.lease)
    _asked(cluster, where)
    _nothing_started(setup, cluster, before)


@pytest.mark.parametrize("where", ALIVE, indirect=True)
def test_a_stable_version_that_is_alive_already_runs(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _upgraded(setup.ledger, cluster, where, last=Step.STABLE)
    before = setup.ledger.entries(JOB)
    with pytest.raises(AlreadyDeployed, match="already runs as deployment d2"):
        setup.engine.upgrade()
    _asked(cluster, where)
    _nothing_started(setup, cluster, before)


@pytest.mark.parametrize("where", NO_ANSWER, indirect=True)
def test_an_upgrade_run_again_is_refused_when_its_job_cannot_be_told(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _upgraded(setup.ledger, cluster, where)
    _checkpoint_on_disk(setup, where["job_id"])
    before = setup.ledger.entries(JOB)
    with pytest.raises(ClusterError, match=f"cannot tell whether version 2 of '{JOB}'") as refused:
        setup.engine.upgrade()
    assert "nothing was changed" in str(refused.value)
    _nothing_started(setup, cluster, before)


def test_control_an_upgrade_run_again_restarts_a_job_whose_process_is_gone(
    setup: Setup, cluster: Cluster
) -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    where = {"rest_url": f"http://127.0.0.1:{free_port()}", "job_id": RESTARTING, "pid": done.pid}
    _upgraded(setup.ledger, cluster, where)
    _checkpoint_on_disk(setup, RESTARTING)
    with pytest.raises(Started):
        setup.engine.upgrade()
    assert setup.target.starts and cluster.changes() == ["POST /jobs"]
    assert setup.ledger.deployments(JOB)["d2"][-1].step is Step.FAILED


# --- an upgrade run again: its deployment at SUBMITTED (the job id recorded) ---------------


@pytest.mark.parametrize("where", ALIVE, indirect=True)
def test_an_upgrade_run_again_adopts_its_submitted_job_and_starts_nothing(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _upgraded(setup.ledger, cluster, where, last=Step.SUBMITTED)
    prepared = setup.prepare()
    try:
        assert isinstance(prepared, OpenWatch)
        assert (prepared.deployment, prepared.job_id) == ("d2", where["job_id"])
    finally:
        setup.ledger.release(prepared.lease)
    deployments = setup.ledger.deployments(JOB)
    assert list(deployments) == ["d1", "d2"]
    adopted = deployments["d2"][-1]
    assert adopted.step is Step.RUNNING and adopted.data["adopted"] is True
    assert setup.target.starts == [] and cluster.changes() == []


@pytest.mark.parametrize("where", NO_ANSWER, indirect=True)
def test_an_upgrade_run_again_at_submitted_is_refused_when_its_job_cannot_be_told(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _upgraded(setup.ledger, cluster, where, last=Step.SUBMITTED)
    _checkpoint_on_disk(setup, where["job_id"])
    before = setup.ledger.entries(JOB)
    with pytest.raises(ClusterError, match="cannot be told now") as refused:
        setup.engine.upgrade()
    assert "nothing was changed" in str(refused.value)
    _nothing_started(setup, cluster, before)


# --- a first deploy (or a restore) over the ledger's current deployment --------------------


@pytest.mark.parametrize("where", ALIVE + NO_ANSWER, indirect=True)
def test_a_deploy_is_refused_while_the_current_version_may_run(
    setup: Setup, cluster: Cluster, where: dict[str, Any]
) -> None:
    _running(setup.ledger, where)
    before = setup.ledger.entries(JOB)
    if where["rest_url"] == cluster.url:
        expected: Any = pytest.raises(ConfigError, match=f"{JOB} already runs")
    else:
        expected = pytest.raises(ClusterError, match=f"cannot tell whether {JOB} still runs")
    with expected:
        setup.engine.deploy()
    _asked(cluster, where)
    _nothing_started(setup, cluster, before)


# --- the dry run's --upgrade-from latest-checkpoint ----------------------------------------


def _dry_run_state(tmp_path: Path, where: dict[str, Any]) -> str:
    storage = tmp_path / "state" / JOB
    root = storage / "checkpoints" / where["job_id"] / "chk-3"
    root.mkdir(parents=True)
    (root / "_metadata").write_bytes(b"x")  # found, were the check to let it be used
    job = SimpleNamespace(name=JOB)
    settings = SimpleNamespace(storage=lambda name: storage)
    old = {"version": "1", **where}
    work = tmp_path / "work"
    return _obtain_state(job, settings, old, "latest-checkpoint", work)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ALIVE, indirect=True)
def test_the_dry_run_takes_a_restarting_or_created_job_for_alive(
    tmp_path: Path, cluster: Cluster, where: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="is alive and deletes its older checkpoints"):
        _dry_run_state(tmp_path, where)
    _asked(cluster, where)
    assert cluster.changes() == []


@pytest.mark.parametrize("where", NO_ANSWER, indirect=True)
def test_the_dry_run_does_not_take_a_job_it_cannot_tell_for_gone(
    tmp_path: Path, cluster: Cluster, where: dict[str, Any]
) -> None:
    with pytest.raises(ClusterError, match="cannot tell whether the running version"):
        _dry_run_state(tmp_path, where)
    assert cluster.changes() == []


@pytest.mark.parametrize("where", ["CANCELED"], indirect=True)
def test_control_the_dry_run_uses_the_checkpoint_of_a_dead_job(
    tmp_path: Path, where: dict[str, Any]
) -> None:
    assert _dry_run_state(tmp_path, where) == CHECKPOINTS[CANCELED]
