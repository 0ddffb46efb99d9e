"""``--upgrade-from savepoint``: gate, savepoint, stop, in the order the ledger records them.

This module talks to Flink over REST and to the job through manifests; it never imports PyFlink.
The engine (:mod:`flowship.deploy.engine`) starts the new version from the savepoint this
returns, then records SUBMITTED and RUNNING. Every transition is appended to the ledger before
its action, so running the same command again after the deployer died resumes from the last
recorded step:

* PLANNED / CHECKED: nothing was touched yet; the old version still runs: start over.
* SAVEPOINTING: a savepoint completed in the recorded directory is used; if none did and the old
  job still runs, the stop is taken again.
* STOPPED / SUBMITTED: the old version is gone; start the new one from the recorded savepoint.
* RUNNING, the new version's job still alive (its deployer died during the health watch): the
  watch is resumed (:class:`OpenWatch`), its window counted from the recorded RUNNING time, and
  reaches its verdict (STABLE, or the rollback). If its job is gone too (on the local target it
  lives in the deployer's process), it is restarted from its latest checkpoint and watched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship.deploy.alive import (
    Liveness,
    Verdict,
    deployment_liveness,
    liveness,
    process_alive,
)
from flowship.deploy.check import UpgradeReport, check_upgrade, with_running_max_parallelism
from flowship.deploy.health import (
    Flow,
    baseline_flow,
    read_flow,
    verdict_open_since,
    with_lag_trend,
)
from flowship.deploy.ledger import Lease, Ledger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest, completed_savepoint
from flowship.deploy.savepoints import Storage, as_storage, child, is_local
from flowship.errors import ClusterError, ConfigError, FlowshipError

log = get_logger("flowship.deploy")

#: For the gate: reads the flag rules in force on the job's control topic.
RulesReader = Callable[[], Mapping[str, Mapping[str, Any]]]


class AlreadyDeployed(FlowshipError):
    """The version to deploy already is the running deployment: nothing to do."""

    def __init__(self, deployment: str, data: Mapping[str, Any]) -> None:
        super().__init__(
            f"version {data.get('version')} already runs as deployment "
            f"{deployment} (Flink job {data.get('job_id')})"
        )
        self.deployment = deployment


class UpgradeRefused(FlowshipError):
    """The new version cannot read the running version's state: nothing was stopped."""

    def __init__(self, report: UpgradeReport) -> None:
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class OpenWatch:
    """The new version runs, but no verdict was recorded: its deployer died during the watch."""

    deployment: str
    job_id: str
    #: when RUNNING was recorded (wall clock, as the ledger's ``at``): the window counts from it
    running_at: float
    lease: Lease
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Prepared:
    """The old version is stopped with a savepoint; start the new version from it."""

    deployment: str
    savepoint: str
    lease: Lease
    previous: str


#: Flink refuses a savepoint while some of the job's tasks are not (yet, or again) running.
_TASKS_NOT_RUNNING = "Not all required tasks are currently running"


def stop_with_savepoint(
    rest: FlinkRest, job_id: str, target: Storage, retry_s: float = 60.0
) -> str:
    """Stop ``job_id`` with a savepoint into ``target``; retried while tasks are not running.

    A job whose state is RUNNING can still have tasks deploying or restarting; Flink then
    aborts the savepoint and the job keeps running untouched, so taking it again is safe.
    """
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return rest.stop_with_savepoint(job_id, target)
        except ClusterError as exc:
            if _TASKS_NOT_RUNNING not in str(exc) or time.monotonic() > deadline:
                raise
            log.info("upgrade.stop_retry", job_id=job_id, reason=_TASKS_NOT_RUNNING)
            time.sleep(1.0)


def prepare_upgrade(
    ledger: Ledger,
    job: str,
    version: str,
    manifest: Mapping[str, Any],
    script: str,
    savepoint_root: Storage,
    checkpoint_root: Storage | None = None,
    from_checkpoint: bool = False,
    rules: RulesReader | None = None,
    prepare: Callable[[], None] | None = None,
    planned: Callable[[], Mapping[str, Any]] | None = None,
) -> Prepared | OpenWatch:
    """Check the new version against the running one, then stop that one with a savepoint.

    ``prepare`` (the target's :meth:`~flowship.deploy.engine.Target.prepare`: Kafka answers,
    the sources' topics exist, the control plane's topics are there) runs once the lease is
    held and the ledger knows the job, before anything is recorded or stopped, also before a
    resumed deployment takes its savepoint again (it is idempotent).

    ``rules`` reads the flag rules in force on the job's control topic, for the gate; it is
    called only when the running or the new version has a control plane.

    With ``from_checkpoint`` the old version must already be gone (dead or failing and
    cancelled): its latest retained checkpoint stands in for the savepoint.

    ``planned`` gives more facts for the PLANNED entry (the archive of the code), asked for
    only once the upgrade goes ahead.

    Returns :class:`OpenWatch` instead when this version already runs with its health verdict
    still open (the deployer died during the watch): the caller judges it, nothing is started.

    Raises :class:`UpgradeRefused` (recorded as REFUSED; the old job untouched, no savepoint)
    when the manifests are incompatible, and ConfigError / ClusterError for bad input before
    anything is recorded.
    """
    if checkpoint_root is None:
        checkpoint_root = (
            savepoint_root.parent / "checkpoints"
            if isinstance(savepoint_root, Path)
            else savepoint_root.rstrip("/").rsplit("/", 1)[0] + "/checkpoints"
        )
    lease = ledger.acquire(job)
    try:
        if prepare is not None and ledger.entries(job):
            prepare()  # before _resume or the gate records or stops anything
        settle_submitted(ledger, job, close_dead=False)
        resumed = _resume(ledger, job, version, lease, checkpoint_root)
        if resumed is not None:
            return resumed
        current = ledger.current(job)
        if current is None:
            msg = (
                f"unknown job {job!r}: the ledger records no running deployment of it; "
                "deploy it first (without --upgrade-from), or pass --upgrade-from PATH"
            )
            raise ConfigError(msg)
        previous, old = current
        rest = FlinkRest(old["rest_url"])
        if from_checkpoint:
            return _from_checkpoint(
                ledger,
                job,
                version,
                manifest,
                script,
                previous,
                old,
                checkpoint_root,
                lease,
                rules=rules,
                **(planned() if planned else {}),
            )
        rest.overview()  # unreachable: ClusterError, nothing recorded
        alive = deployment_liveness(old)
        if not alive.alive:
            how = (
                "if it died, resume from its retained checkpoint with --upgrade-from "
                "latest-checkpoint"
                if alive.dead
                else "nothing was changed; try again when its cluster answers"
            )
            msg = (
                f"the running version of {job!r} (Flink job {old['job_id']} at "
                f"{old['rest_url']}) is not running ({alive.verdict}: {alive.seen}); {how}"
            )
            raise ClusterError(msg)
        early = _reading(rest, str(old["job_id"]))  # the gate's time apart: its lag trend
        deployment = plan_and_check(
            ledger,
            job,
            version,
            manifest,
            script,
            previous,
            old,
            rules=rules,
            **(planned() if planned else {}),
        )
        return stop_old(
            ledger,
            job,
            deployment,
            previous,
            old,
            child(savepoint_root, deployment),
            lease,
            early=early,
        )
    except BaseException:
        ledger.release(lease)
        raise


def _reading(rest: FlinkRest, job_id: str) -> tuple[float, Flow] | None:
    """The running version's flow now, and when (None: its metrics cannot be read)."""
    try:
        return time.monotonic(), read_flow(rest, job_id)
    except ClusterError:
        return None


def stop_old(
    ledger: Ledger,
    job: str,
    deployment: str,
    previous: str,
    old: Mapping[str, Any],
    target: Storage,
    lease: Lease,
    early: tuple[float, Flow] | None = None,
) -> Prepared:
    """Record SAVEPOINTING, stop the ``old`` version with a savepoint into ``target``, STOPPED.

    SAVEPOINTING records what the old version's operators counted until now (its ``baseline``
    flow, when its metrics can be read): the health watch judges the new version against it.
    ``early``: an earlier reading of it (monotonic time, flow), taken before the gate: the two
    give its lag trend (:func:`~flowship.deploy.health.with_lag_trend`).
    """
    baseline = baseline_flow(old["rest_url"], old["job_id"])
    if baseline is not None and early is not None:
        baseline = with_lag_trend(early[1], time.monotonic() - early[0], baseline)
    ledger.record(
        job,
        deployment,
        Step.SAVEPOINTING,
        target=str(target),
        old_job_id=old["job_id"],
        old_rest_url=old["rest_url"],
        baseline=None if baseline is None else baseline.to_json(),
    )
    started = time.monotonic()
    savepoint = stop_with_savepoint(FlinkRest(old["rest_url"]), old["job_id"], target)
    ledger.record(
        job,
        deployment,
        Step.STOPPED,
        savepoint=savepoint,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    log.info(
        "upgrade.stopped",
        job=job,
        savepoint=savepoint,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return Prepared(deployment, savepoint, lease, previous)


def settle_submitted(ledger: Ledger, job: str, *, close_dead: bool = True) -> None:
    """Settle the newest deployment when its deployer died after SUBMITTED, before RUNNING.

    Before anything else is started: a target that fixes its Flink job ids (a session cluster)
    recorded the id at SUBMITTED, before submitting, and the job may run now although RUNNING
    was never recorded. When the cluster runs it, RUNNING is recorded now (``adopted``): the
    ledger's current deployment is that job, so nothing starts a second copy, and an open
    verdict is judged as after any deployer that died during its watch. When it is gone, or
    was never accepted, the deployment is recorded FAILED (with ``close_dead``; an upgrade
    leaves it to :func:`_resume`, which starts it again from its savepoint). Raises
    ClusterError, changing nothing, when the cluster cannot tell.
    """
    deployments = ledger.deployments(job)
    if not deployments:
        return
    deployment, entries = list(deployments.items())[-1]
    data = merged(entries)
    if entries[-1].step is not Step.SUBMITTED or not data.get("job_id"):
        return
    alive = _liveness(data)
    where = f"Flink job {data['job_id']} at {data.get('rest_url')}"
    if alive.unknown:
        msg = (
            f"deployment {deployment} of {job!r} (version {data.get('version')}) submitted "
            f"{where}, then its deployer died; whether that job runs cannot be told now "
            f"({alive.seen}); nothing was changed (a second copy is never started while the "
            "first may run); try again when the cluster answers"
        )
        raise ClusterError(msg)
    if alive.alive:
        ledger.record(
            job,
            deployment,
            Step.RUNNING,
            job_id=data["job_id"],
            rest_url=data.get("rest_url"),
            adopted=True,
        )
        log.info("deploy.adopted", job=job, deployment=deployment, job_id=data["job_id"])
    elif close_dead:
        ledger.record(
            job,
            deployment,
            Step.FAILED,
            reason=f"its deployer died after submitting {where}, which is not running "
            f"({alive.seen})",
        )


def _resume(
    ledger: Ledger, job: str, version: str, lease: Lease, checkpoint_root: Storage
) -> Prepared | OpenWatch | None:
    """Pick up this version's unfinished deployment after the deployer died, if there is one."""
    deployments = ledger.deployments(job)
    if not deployments:
        return None
    deployment, entries = list(deployments.items())[-1]
    data = merged(entries)
    last = entries[-1].step
    if last in (Step.RUNNING, Step.STABLE) and data.get("version") == version:
        alive = _liveness(data)
        running_at = verdict_open_since(entries)
        if alive.alive and running_at is not None:
            log.info("upgrade.watch_open", job=job, deployment=deployment, since=running_at)
            return OpenWatch(deployment, str(data["job_id"]), running_at, lease, data)
        if alive.alive:
            raise AlreadyDeployed(deployment, data)
        if alive.unknown:
            msg = (
                f"cannot tell whether version {version} of {job!r} (deployment {deployment}, "
                f"Flink job {data.get('job_id')} at {data.get('rest_url')}) still runs: "
                f"{alive.seen}; nothing was changed (a second copy is never started while the "
                "first may run); try again when its cluster answers"
            )
            raise ClusterError(msg)
        if last is Step.RUNNING:
            return _resume_dead_running(
                ledger, job, deployment, data, entries, lease, checkpoint_root
            )
    if last is Step.SUBMITTED and data.get("version") == version and data.get("job_id"):
        # settle_submitted found the job it submitted gone (one that runs is adopted)
        return _resume_dead_running(
            ledger,
            job,
            deployment,
            data,
            entries,
            lease,
            checkpoint_root,
            reason=f"its deployer died after submitting Flink job {data['job_id']}, which is "
            "not running; starting it again from its latest checkpoint or savepoint",
        )
    if (
        data.get("version") != version
        or last in (Step.PLANNED, Step.CHECKED)
        or last.terminal
        or last in (Step.RUNNING, Step.FAILED, Step.ROLLING_BACK)
    ):
        if last in (Step.PLANNED, Step.CHECKED):
            ledger.record(
                job,
                deployment,
                Step.FAILED,
                reason="deployer died before stopping the old version; starting over",
            )
        return None
    previous = str(data.get("previous", ""))
    if last is Step.SAVEPOINTING:
        found = _completed_stop(data)
        if found is None:
            alive = liveness(data["old_rest_url"], data["old_job_id"])
            if alive.alive:
                return _resume_stop(ledger, job, deployment, previous, data, lease)
            if alive.unknown:
                msg = (
                    f"deployment {deployment} of {job!r} died while stopping the old version "
                    f"(Flink job {data['old_job_id']}), whose cluster does not answer now "
                    f"({alive.seen}); no savepoint completed in {data['target']}. Run the "
                    "same command again when the cluster answers"
                )
                raise ClusterError(msg)
            msg = (
                f"deployment {deployment} of {job!r} died while stopping the old version, "
                f"which is gone, and no savepoint completed in {data['target']}; resume from "
                "its retained checkpoint with --upgrade-from PATH"
            )
            raise ClusterError(msg)
        ledger.record(job, deployment, Step.STOPPED, savepoint=found, resumed=True)
        return Prepared(deployment, found, lease, previous)
    # STOPPED or SUBMITTED: the old version is gone; start from the recorded savepoint, or from
    # a checkpoint the new version completed after it (it may have committed output since). A
    # deployment that restarts a dead one has no STOPPED: it counts from its SUBMITTED, and
    # starts from what it was restored from
    since = next(e.at for e in entries if e.step in (Step.STOPPED, Step.SUBMITTED))
    start = (
        restore_point(data, checkpoint_root, since) if last is Step.SUBMITTED else None
    ) or str(data.get("savepoint") or data.get("restored_from") or "")
    if not start:
        msg = (
            f"deployment {deployment} of {job!r} died at {last.value} and left no checkpoint "
            f"or savepoint to start from (looked in {checkpoint_root}); start it with "
            "--upgrade-from PATH"
        )
        raise ClusterError(msg)
    log.info("upgrade.resumed", job=job, deployment=deployment, step=last.value, start=start)
    return Prepared(deployment, start, lease, previous)


def running_manifest(old: Mapping[str, Any]) -> Mapping[str, Any]:
    """The running deployment's manifest, with what its Flink job says where the graph is silent.

    Its graph's max parallelism left to Flink is read from the running job
    (:func:`~flowship.deploy.check.with_running_max_parallelism`); as recorded when the job's
    REST API does not answer (the gate then warns).
    """
    manifest = old["manifest"]
    if not old.get("rest_url") or not old.get("job_id"):
        return manifest
    try:
        job = FlinkRest(str(old["rest_url"]), timeout=5.0).job(str(old["job_id"]))
    except ClusterError:
        return manifest
    return with_running_max_parallelism(manifest, job.get("vertices") or [])


def plan_and_check(
    ledger: Ledger,
    job: str,
    version: str,
    manifest: Mapping[str, Any],
    script: str,
    previous: str,
    old: Mapping[str, Any],
    rules: RulesReader | None = None,
    **data: Any,
) -> str:
    """Record PLANNED, run the gate, record CHECKED (or REFUSED and raise); the deployment id."""
    deployment = ledger.new_deployment_id()
    started = time.monotonic()
    ledger.record(
        job,
        deployment,
        Step.PLANNED,
        version=version,
        manifest=dict(manifest),
        script=script,
        code_digest=manifest.get("code_digest"),
        previous=previous,
        previous_version=old.get("version"),
        **data,
    )
    in_force = None
    if rules is not None and (old["manifest"].get("control") or manifest.get("control")):
        in_force = rules()
    report = check_upgrade(running_manifest(old), manifest, rules=in_force)
    if not report.compatible:
        ledger.record(job, deployment, Step.REFUSED, report=report.to_json())
        log.warning("upgrade.refused", job=job, version=version, errors=len(report.errors))
        raise UpgradeRefused(report)
    ledger.record(
        job,
        deployment,
        Step.CHECKED,
        warnings=len(report.warnings),
        problems=[p.to_json() for p in report.warnings],
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    for problem in report.warnings:
        log.warning("upgrade.warning", job=job, version=version, **problem.to_json())
    log.info("upgrade.checked", job=job, version=version, warnings=len(report.warnings))
    return deployment


def _from_checkpoint(
    ledger: Ledger,
    job: str,
    version: str,
    manifest: Mapping[str, Any],
    script: str,
    previous: str,
    old: Mapping[str, Any],
    checkpoint_root: Storage,
    lease: Lease,
    rules: RulesReader | None = None,
    **planned: Any,
) -> Prepared:
    """The old version is gone: start from its latest retained checkpoint (no savepoint)."""
    alive = deployment_liveness(old)
    if alive.alive:
        msg = (
            f"the running version of {job!r} (Flink job {old['job_id']}) is alive "
            f"({alive.seen}); upgrade it with --upgrade-from savepoint (a checkpoint is for a "
            "version that died; one that fails over and over: cancel it first)"
        )
        raise ConfigError(msg)
    if alive.unknown:
        msg = (
            f"cannot tell whether the running version of {job!r} (Flink job {old['job_id']} "
            f"at {old['rest_url']}) is gone: {alive.seen}; nothing was changed (starting from "
            "its checkpoint while it may still run would make two copies)"
        )
        raise ClusterError(msg)
    found = restore_point(old, checkpoint_root, 0.0)
    if found is None:
        msg = (
            f"no retained checkpoint of Flink job {old['job_id']} under {checkpoint_root}; "
            "pass a savepoint or checkpoint directory with --upgrade-from PATH"
        )
        raise ConfigError(msg)
    deployment = plan_and_check(
        ledger,
        job,
        version,
        manifest,
        script,
        previous,
        old,
        rules=rules,
        from_checkpoint=found,
        **planned,
    )
    ledger.record(job, deployment, Step.STOPPED, savepoint=found, checkpoint=True)
    log.info("upgrade.from_checkpoint", job=job, checkpoint=found)
    return Prepared(deployment, found, lease, previous)


def _resume_dead_running(
    ledger: Ledger,
    job: str,
    deployment: str,
    data: Mapping[str, Any],
    entries: list[Any],
    lease: Lease,
    checkpoint_root: Storage,
    reason: str = "the job's process is gone (the deployer died after RUNNING); restarting "
    "from its latest checkpoint",
) -> Prepared:
    """A version was started, then its job died: restart it from its last checkpoint.

    As a deployment of its own (``restarts`` the dead one), with a SUBMITTED of its own: a
    job id of its own, on a target that fixes them.
    """
    ledger.record(job, deployment, Step.FAILED, reason=reason)
    since = next(e.at for e in entries if e.step in (Step.STOPPED, Step.SUBMITTED))
    start = restore_point(data, checkpoint_root, since) or str(
        data.get("savepoint") or data.get("restored_from") or ""
    )
    if not start:
        msg = (
            f"deployment {deployment} of {job!r} died and left no checkpoint or savepoint "
            f"to restart from (looked in {checkpoint_root})"
        )
        raise ClusterError(msg)
    restarted = ledger.new_deployment_id()
    ledger.record(
        job,
        restarted,
        Step.PLANNED,
        version=data.get("version"),
        manifest=data.get("manifest"),
        script=data.get("script"),
        previous=data.get("previous"),
        restarts=deployment,
        restored_from=start,
        **({"code_archive": data["code_archive"]} if data.get("code_archive") else {}),
    )
    log.info("upgrade.resumed", job=job, deployment=restarted, step="RUNNING", start=start)
    return Prepared(restarted, start, lease, str(data.get("previous", "")))


def _liveness(data: Mapping[str, Any]) -> Liveness:
    """A recorded deployment's job: alive, dead or unknown, as the cluster and its process tell.

    The local target's job lived in the deployer's process (its recorded ``pid``): its
    mini-cluster may answer for a moment after that process died, but the job is going with it.
    """
    alive = deployment_liveness(data)
    if alive.alive and _process_gone(data):
        return Liveness(Verdict.DEAD, f"its process {data.get('pid')} is gone")
    return alive


def _process_gone(data: Mapping[str, Any]) -> bool:
    """Whether the local target's job process (the ``pid`` it recorded) no longer exists."""
    pid = data.get("pid")
    if not pid:
        return False  # a session cluster's job: it outlives the deployer
    return not process_alive(int(pid), data.get("pid_start"))


def restore_point(data: Mapping[str, Any], checkpoint_root: Storage, since: float) -> str | None:
    """The newest completed checkpoint of a deployment's Flink job, from Flink's own record.

    Asked of the job's REST API first: its checkpoint history names the checkpoint's location
    on any storage (``file:``, ``s3://``, ``hdfs://``). When that does not answer or names none
    (the local target's job went with its process), the highest-numbered checkpoint under
    ``checkpoint_root/JOB_ID``. No clocks are compared: every target records the job id at
    SUBMITTED, before it starts the job. Only a deployment recorded by a flowship that did not
    (on the local target) falls back to the newest checkpoint written after ``since``. None:
    the job completed no checkpoint.
    """
    job_id, rest_url = data.get("job_id"), data.get("rest_url")
    if not job_id:
        if isinstance(checkpoint_root, Path):
            return latest_checkpoint(checkpoint_root, since)
        return None
    if rest_url:
        try:
            history = FlinkRest(str(rest_url), timeout=5.0).checkpoints(str(job_id))
            completed = (history.get("latest") or {}).get("completed") or {}
            if completed.get("external_path"):
                return str(completed["external_path"])
        except ClusterError:
            pass  # its cluster is gone with its process: what it left on disk tells
    if not isinstance(checkpoint_root, Path):
        return None  # on a remote file system: only Flink's own record counts
    numbered = [
        (int(m.parent.name.removeprefix("chk-")), m.parent)
        for m in (checkpoint_root / str(job_id)).glob("chk-*/_metadata")
        if m.parent.name.removeprefix("chk-").isdigit()
    ]
    return max(numbered)[1].as_uri() if numbered else None


def latest_checkpoint(root: Path, since: float, pattern: str = "*/chk-*") -> str | None:
    """The newest completed checkpoint under ``root`` (JOB_ID/chk-N/_metadata) after ``since``."""
    found = [m for m in root.glob(f"{pattern}/_metadata") if m.stat().st_mtime > since]
    if not found:
        return None
    newest = max(found, key=lambda m: m.stat().st_mtime)
    return newest.parent.as_uri()


def _completed_stop(data: Mapping[str, Any]) -> str | None:
    """The savepoint a deployment that died at SAVEPOINTING had Flink write, if it completed.

    Looked for in the recorded target directory (a savepoint there is this deployment's: each
    one has its own), or, on a remote file system, in the old job's savepoint history on its
    cluster (a session cluster keeps it after the job stopped).
    """
    target = str(data["target"])
    if is_local(target):
        return completed_savepoint(Path(target))
    try:
        history = FlinkRest(str(data["old_rest_url"]), timeout=5.0).checkpoints(
            str(data["old_job_id"])
        )
    except ClusterError:
        return None
    latest = (history.get("latest") or {}).get("savepoint") or {}
    location = str(latest.get("external_path") or "")
    return location if location.startswith(target.rstrip("/") + "/") else None


def _resume_stop(
    ledger: Ledger, job: str, deployment: str, previous: str, data: Mapping[str, Any], lease: Lease
) -> Prepared:
    target = as_storage(str(data["target"]))
    savepoint = stop_with_savepoint(FlinkRest(data["old_rest_url"]), data["old_job_id"], target)
    ledger.record(job, deployment, Step.STOPPED, savepoint=savepoint, resumed=True)
    return Prepared(deployment, savepoint, lease, previous)
