"""The one deployment sequence: plan, gate, stop, start, hand over, watch, verdict, resumable.

Every way a version is started goes through :class:`Engine`, on every target:

* :meth:`Engine.deploy`: a first deploy, a restore from ``--upgrade-from PATH``, or the previous
  version started again by an automatic rollback: take the lease, refuse if the ledger's current
  deployment is still alive, record PLANNED.
* :meth:`Engine.upgrade`: ``--upgrade-from savepoint|latest-checkpoint``: the gate and the stop
  (:func:`flowship.deploy.upgrade.prepare_upgrade`), then the old version's resources are let go.

Both then run the same steps, each recorded in the ledger before it is acted on::

    SUBMITTED -> RUNNING -> hand-over checkpoints -> health watch -> STABLE
                                                     (not healthy) -> FAILED -> ROLLING_BACK
                                                                             -> ROLLED_BACK

The parts that differ between targets sit behind :class:`Target`: the local target runs the job
on a mini-cluster inside the deployer's own process (``flowship.job``'s ``LocalTarget``); the
cluster target submits it to a session cluster over REST (``ClusterTarget``). The job package
builds the graph and hands the engine a :class:`Release` and a :class:`Target`; this module
imports neither PyFlink nor ``flowship.job``.

The lease is held from the first record to the verdict (STABLE, or the rollback handed to the
previous version's process), renewed meanwhile by a :class:`LeaseRenewer`; a lease lost on the
way makes the next record raise :class:`~flowship.deploy.ledger.LeaseLostError`, so no step
starts without it. The local target's process then keeps running its job.
"""

from __future__ import annotations

import contextlib
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship._spawn import spawn_detached, without_flags
from flowship.deploy.alive import cancel_confirmed, deployment_liveness
from flowship.deploy.archive import CodeArchiveError, archive_code, runnable_script
from flowship.deploy.exits import EXIT_OK, EXIT_ROLLED_BACK
from flowship.deploy.health import Flow, HealthThresholds, hand_over, watch
from flowship.deploy.ledger import Lease, LeaseHeldError, LeaseRenewer, Ledger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.savepoints import Storage, as_uri, child, storage_root
from flowship.deploy.upgrade import (
    AlreadyDeployed,
    OpenWatch,
    RulesReader,
    prepare_upgrade,
    settle_submitted,
)
from flowship.errors import ClusterError, ConfigError, JobFailedError

log = get_logger("flowship.deploy")

#: Seconds an automatic rollback's previous version gets to record its new deployment.
ROLLBACK_START_TIMEOUT = 180.0
#: Seconds a rollback's start waits for a Kafka that does not answer (well inside
#: ROLLBACK_START_TIMEOUT, which also covers the previous version's start-up)
ROLLBACK_KAFKA_WAIT_S = 90.0


@dataclass(frozen=True)
class Release:
    """The version being deployed, as the ledger records it."""

    job: str
    version: str
    manifest: Mapping[str, Any]
    script: str


@dataclass(frozen=True)
class Policy:
    """How a deployment is carried out: where its state goes, how its health is judged."""

    state_dir: Path
    health_window_s: float = 60.0
    health_checkpoints: int = 2
    #: how the new version's output is judged against the previous version's
    health: HealthThresholds = field(default_factory=HealthThresholds)
    #: a bounded job (``--bounded``) ends by itself: no hand-over, no health watch
    bounded: bool = False
    #: the deployer's own flags: the automatic rollback starts the previous version with them
    argv: Sequence[str] = ()
    #: where checkpoints and savepoints go when not under ``state_dir`` (``--state-storage``)
    state_storage: str | None = None

    def savepoints(self, job: str) -> Storage:
        """Where the job's savepoints go (one directory per deployment)."""
        return child(storage_root(self.state_dir, self.state_storage, job), "savepoints")

    def checkpoints(self, job: str) -> Storage:
        """Where the job's checkpoints go (one directory per Flink job id)."""
        return child(storage_root(self.state_dir, self.state_storage, job), "checkpoints")


class Target(ABC):
    """Where a version runs: the parts of a deployment that differ between targets."""

    #: the REST API of the Flink cluster the version runs on
    rest_url: str
    #: the version runs in the deployer's own process (a mini-cluster): it ends with it
    in_process: bool = False

    def prepare(self) -> None:  # noqa: B027 (a hook: most targets need nothing)
        """Before anything is recorded or stopped: check and create what the version needs.

        Outside Flink, e.g. that Kafka answers and the sources' topics exist (a typo fails here,
        in seconds), and the topics of the job's control plane. Called once the lease is held
        (a held lease is reported first); for a first deploy once the ledger's current
        deployment was found gone, for an upgrade once the ledger knows the job. Idempotent: a
        resumed deployment calls it again.
        """

    def old_version_stopped(self) -> None:  # noqa: B027 (a hook: most targets need nothing)
        """The running version was stopped for an upgrade: wait for what it held to be free."""

    @abstractmethod
    def start(self, restore: str | None, deployment: str) -> str:
        """Start the version (from ``restore``); its Flink job id once it is RUNNING.

        Raises :class:`~flowship.errors.JobFailedError` with Flink's reason when it does not
        start; the engine records it as FAILED.
        """

    def new_job_id(self) -> str | None:
        """The Flink job id the next :meth:`start` submits under; None if it cannot be fixed.

        The engine records it at SUBMITTED, before the submission: when the deployer dies after
        the cluster accepted the job, the next run finds the job by that id and adopts it
        instead of starting a second copy, or, when the job died with it (the local target),
        finds the checkpoints that job completed by their directory, never by file times.
        """
        return None

    def recorded(self) -> dict[str, Any]:
        """What the ledger records at SUBMITTED and RUNNING besides the job id and REST URL."""
        return {}

    def announce(self, job_id: str, deployment: str) -> None:  # noqa: B027
        """Tell the user the version runs (after RUNNING was recorded)."""

    def cancelled(self) -> None:  # noqa: B027
        """The version was cancelled for a rollback: wait for what it held to be free."""

    def finish(self) -> None:  # noqa: B027
        """After the verdict, with the lease given back: the local target runs its job here."""


@dataclass
class Engine:
    """Deploys one :class:`Release` of a job to one :class:`Target`, recorded in a ledger."""

    ledger: Ledger
    release: Release
    target: Target
    policy: Policy
    #: the flag rules in force, for the gate (only read when a version has a control plane)
    rules: RulesReader | None = None
    #: called with the stopped version once the running version was stopped for an upgrade
    #: (control plane goodbyes for its instances; a shadow's, of another version, stay)
    retire: Callable[[str | None], None] | None = None
    #: called once the version runs and the lease is given back, before the target's finish
    #: (a canary's first routing change); it must not raise
    after_start: Callable[[], None] | None = None
    _archive: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def _code(self) -> dict[str, Any]:
        """``code_archive``: this version's code archived (once) before its first PLANNED.

        A job directory too large to archive, or a store that cannot be written, does not stop
        the deployment: it is recorded without an archive (a rollback to it then runs the code
        at its recorded path, if that is unchanged) and the log says why.
        """
        if self._archive is None:
            r = self.release
            store = self.policy.state_dir.resolve() / r.job / "code"
            try:
                self._archive = archive_code(Path(r.script), store)
            except (CodeArchiveError, OSError) as exc:
                log.warning("code.not_archived", job=r.job, version=r.version, reason=str(exc))
                self._archive = {}
        return {"code_archive": self._archive} if self._archive else {}

    def deploy(
        self,
        restore: str | None = None,
        rollback_of: str | None = None,
        facts: Mapping[str, Any] | None = None,
    ) -> int:
        """A first deploy, a restore from ``restore``, or a rollback's start; the exit code.

        ``facts``: more for PLANNED to record (a shadow's kind and where its diff starts).
        """
        with LeaseRenewer(self.ledger, self.release.job):
            deployment, lease = self._begin(restore, rollback_of, facts or {})
            return self._run(deployment, lease, restore, upgrade=False)

    def upgrade(self, from_checkpoint: bool = False) -> int:
        """Gate, stop the running version with a savepoint, start this one from it, watch it.

        With ``from_checkpoint`` the running version died: its latest retained checkpoint
        stands in for the savepoint.
        """
        with LeaseRenewer(self.ledger, self.release.job):
            return self._upgrade(from_checkpoint)

    def _prepare(self) -> None:
        """With the job's lease held, before anything is recorded or stopped."""
        from flowship.deploy.side_by_side import refuse_if_serving

        # under the lease: a canary's routing change takes the job's lease too (see route())
        refuse_if_serving(self.ledger, self.release.job, "an upgrade")
        self.target.prepare()

    def _upgrade(self, from_checkpoint: bool) -> int:
        r = self.release
        prepared = prepare_upgrade(
            self.ledger,
            r.job,
            r.version,
            r.manifest,
            r.script,
            self.policy.savepoints(r.job),
            self.policy.checkpoints(r.job),
            from_checkpoint=from_checkpoint,
            rules=self.rules,
            prepare=self._prepare,
            planned=self._code,
        )
        if isinstance(prepared, OpenWatch):
            return self._resume_watch(prepared)
        try:
            self.target.old_version_stopped()
            if self.retire is not None:
                deployments = self.ledger.deployments(self.release.job)
                stopped = merged(deployments.get(prepared.previous, [])).get("version")
                self.retire(None if stopped is None else str(stopped))
        except BaseException:
            self.ledger.release(prepared.lease)
            raise
        restore = as_uri(prepared.savepoint)
        return self._run(prepared.deployment, prepared.lease, restore, upgrade=True)

    def _begin(
        self, restore: str | None, rollback_of: str | None, facts: Mapping[str, Any]
    ) -> tuple[str, Lease]:
        """Take the lease and record PLANNED for a first deploy, a restore, or a rollback.

        Refused (ConfigError) when the ledger's current deployment of the job is alive: a
        running job is changed with --upgrade-from savepoint, never by starting a second one;
        ClusterError when that cannot be told.
        """
        r = self.release
        lease = self.ledger.acquire(r.job)
        try:
            settle_submitted(self.ledger, r.job)
            current = self.ledger.current(r.job)
            if current is not None:
                _refuse_if_alive(r.job, current[1])
            if rollback_of is None:
                self.target.prepare()
            else:
                self._prepare_patiently(rollback_of)
            deployment = self.ledger.new_deployment_id()
            self.ledger.record(
                r.job,
                deployment,
                Step.PLANNED,
                version=r.version,
                manifest=dict(r.manifest),
                script=r.script,
                restored_from=restore,
                rollback_of=rollback_of,
                **self._code(),
                **facts,
            )
        except BaseException:
            self.ledger.release(lease)
            raise
        return deployment, lease

    def _prepare_patiently(self, rollback_of: str) -> None:
        """The target's checks for a rollback's start: wait out a Kafka that does not answer.

        The version being rolled back from is cancelled already; giving up at the first
        unanswered request would leave the job down. Kafka that stays silent past
        :data:`ROLLBACK_KAFKA_WAIT_S` (less than the deployer waits for this start) still fails.
        Bad input (a missing topic) fails at once: waiting does not mend it.
        """
        r = self.release
        deadline = time.monotonic() + ROLLBACK_KAFKA_WAIT_S
        delay = 1.0
        while True:
            try:
                self.target.prepare()
                return
            except ClusterError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "rollback.waiting_for_kafka",
                    job=r.job,
                    version=r.version,
                    rollback_of=rollback_of,
                    retry_in_s=delay,
                    error=str(exc),
                )
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    def _run(self, deployment: str, lease: Lease, restore: str | None, upgrade: bool) -> int:
        """SUBMITTED, RUNNING, hand-over, watch, STABLE or rollback; then the target's finish."""
        r, target = self.release, self.target
        try:
            started = time.monotonic()
            if self.ledger.last_step(r.job, deployment) is not Step.SUBMITTED:
                fixed = target.new_job_id()
                self.ledger.record(
                    r.job,
                    deployment,
                    Step.SUBMITTED,
                    rest_url=target.rest_url,
                    restored_from=restore,
                    **({"job_id": fixed} if fixed else {}),
                    **target.recorded(),
                )
            try:
                job_id = target.start(restore, deployment)
            except JobFailedError as exc:
                if upgrade and not self.policy.bounded:
                    # the old version is stopped already: never leave the pipeline down
                    reason = f"it did not start: {exc}"[:2000]
                    return self._roll_back(deployment, lease, None, reason)
                self.ledger.record(r.job, deployment, Step.FAILED, reason=str(exc)[:2000])
                raise
            self.ledger.record(
                r.job,
                deployment,
                Step.RUNNING,
                job_id=job_id,
                rest_url=target.rest_url,
                **target.recorded(),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
            target.announce(job_id, deployment)
            if restore is not None and not self.policy.bounded:
                self._hand_over(job_id)
            if upgrade and not self.policy.bounded:
                verdict = self._judge(deployment, lease, job_id, self.policy.health_window_s)
                if verdict != EXIT_OK:
                    return verdict
        finally:
            self.ledger.release(lease)
        if self.after_start is not None:
            self.after_start()
        target.finish()
        return EXIT_OK

    def _judge(
        self, deployment: str, lease: Lease, job_id: str, window_s: float, resumed: bool = False
    ) -> int:
        """The health watch and its verdict: STABLE (EXIT_OK) or the rollback (its exit code).

        ``resumed``: the watch of a deployer that died is taken up again; every checkpoint the
        job completed since it started counts (the ones completed while nobody watched too).
        """
        r = self.release
        recorded = merged(self.ledger.deployments(r.job).get(deployment, []))
        health = watch(
            FlinkRest(self.target.rest_url),
            job_id,
            window_s,
            self.policy.health_checkpoints,
            count_from_start=resumed,
            baseline=Flow.from_json(recorded.get("baseline")),
            thresholds=self.policy.health,
        )
        flow = health.observed()
        if not health.stable:
            return self._roll_back(deployment, lease, job_id, health.reason, **flow)
        self.ledger.record(
            r.job,
            deployment,
            Step.STABLE,
            reason=health.reason,
            checkpoints=health.checkpoints,
            waited_s=round(health.waited_s, 1),
            **flow,
            **({"resumed": True} if resumed else {}),
        )
        log.info("upgrade.stable", job=r.job, version=r.version, reason=health.reason)
        return EXIT_OK

    def _resume_watch(self, open_watch: OpenWatch) -> int:
        """Judge a version that runs with no verdict (its deployer died in the watch), now.

        The window counts from the recorded RUNNING time, not from now: a watch that had 20 of
        its 60 s left gets 20 s; one whose window ran out while nobody watched is judged at once
        on what Flink reports for the whole time (failures, checkpoints, records).
        """
        r, lease, deployment = self.release, open_watch.lease, open_watch.deployment
        try:
            if self.policy.bounded:  # a bounded run is never watched: nothing is open
                raise AlreadyDeployed(deployment, open_watch.data)
            elapsed = max(time.time() - open_watch.running_at, 0.0)
            left = max(self.policy.health_window_s - elapsed, 0.0)
            log.info(
                "upgrade.watch_resumed",
                job=r.job,
                version=r.version,
                deployment=deployment,
                job_id=open_watch.job_id,
                running_for_s=round(elapsed, 1),
                window_left_s=round(left, 1),
            )
            print(
                f"flowship: {r.job} {r.version} runs as deployment {deployment} (Flink job "
                f"{open_watch.job_id}) with its health verdict open (its deployer died during "
                f"the watch); watching it for the {left:.0f}s left of its window",
                file=sys.stderr,
                flush=True,
            )
            verdict = self._judge(deployment, lease, open_watch.job_id, left, resumed=True)
        finally:
            self.ledger.release(lease)
        if verdict == EXIT_OK:
            print(f"flowship: {r.job} {r.version} is stable", file=sys.stderr, flush=True)
        return verdict

    def _hand_over(self, job_id: str) -> None:
        """Back-to-back checkpoints while a restored job starts: its first output commits sooner.

        Tasks that take no checkpoint within the health window (or 60 s) are left to the health
        watch: a version gets no longer than its window to take one.
        """
        started = time.monotonic()
        wait_s = min(60.0, self.policy.health_window_s)
        count, first_s = hand_over(FlinkRest(self.target.rest_url), job_id, wait_s=wait_s)
        log.info(
            "job.handover",
            job=self.release.job,
            version=self.release.version,
            job_id=job_id,
            checkpoints=count,
            first_checkpoint_ms=None if first_s is None else int(first_s * 1000),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def _roll_back(
        self, deployment: str, lease: Lease, job_id: str | None, reason: str, **facts: Any
    ) -> int:
        """Cancel the new version, start the previous one from the pre-upgrade savepoint.

        ``job_id`` is the new version's Flink job (None: it did not start). Its cancel is
        confirmed (Flink reports it ended, or does not know it) before anything else starts:
        two copies of a job never run at once. The previous version's script runs as a process
        of its own (``--upgrade-from`` that savepoint, ``--flowship-rollback-of`` this
        deployment), with the deployer's flags.
        """
        r, ledger = self.release, self.ledger
        deployments = ledger.deployments(r.job)
        data = merged(deployments[deployment])
        previous = merged(deployments.get(str(data.get("previous")), []))
        previous_version = previous.get("version")
        try:
            # exactly the code that was deployed, whatever sits at its path now: found before
            # anything is cancelled, so a rollback that cannot start leaves no job down
            script: str | None = runnable_script(previous, previous_version)
        except CodeArchiveError as exc:
            if not previous.get("script"):
                script = None  # nothing recorded at all: said below, after the cancel
            else:
                alive = (
                    "left running (not cancelled) so the job is not down"
                    if job_id
                    else ("not running")
                )
                msg = (
                    f"{reason}; and it cannot be rolled back to version {previous_version}: "
                    f"{exc}. Version {r.version} was {alive}"
                )
                ledger.record(r.job, deployment, Step.FAILED, reason=msg, **facts)
                log.error("upgrade.failed", job=r.job, version=r.version, reason=msg)
                raise JobFailedError(msg) from exc
        ledger.record(r.job, deployment, Step.FAILED, reason=reason, **facts)
        log.error("upgrade.failed", job=r.job, version=r.version, reason=reason)
        savepoint = pre_upgrade_savepoint(deployments, deployment)
        if savepoint is None:
            ledger.record(r.job, deployment, Step.ROLLING_BACK, to_version=previous_version)
            self._confirm_cancelled(deployment, job_id)
            msg = (
                f"cannot roll back {r.job}: the ledger records no savepoint that version "
                f"{previous_version} was stopped with for deployment {deployment}; its new "
                "version was cancelled; restart the previous version by hand from a savepoint "
                "or checkpoint of yours with --upgrade-from PATH"
            )
            ledger.record(r.job, deployment, Step.FAILED, reason=msg)
            raise JobFailedError(msg)
        ledger.record(
            r.job,
            deployment,
            Step.ROLLING_BACK,
            to_version=previous_version,
            from_savepoint=savepoint,
            downstream="the previous version replays the input from the pre-upgrade savepoint: "
            "outputs this version committed for that input are followed by the previous "
            f"version's, which carry the header flowship.replaces={deployment}",
        )
        self._confirm_cancelled(deployment, job_id)
        self.target.cancelled()
        ledger.release(lease)
        if script is None:
            msg = (
                f"cannot roll back {r.job}: the ledger has no script for the previous "
                f"deployment; restart it by hand with --upgrade-from {savepoint}"
            )
            raise JobFailedError(msg)
        cmd = [
            sys.executable,
            str(script),
            *without_flags(self.policy.argv, valued=["--upgrade-from"]),
            "--upgrade-from",
            savepoint,
            "--flowship-rollback-of",
            deployment,
        ]
        log_file = self.policy.state_dir.resolve() / r.job / f"rollback-{deployment}.log"
        child = spawn_detached(cmd, log_file)
        deadline = time.monotonic() + ROLLBACK_START_TIMEOUT
        while time.monotonic() < deadline:
            current = ledger.current(r.job)
            if current is not None and current[1].get("rollback_of") == deployment:
                # the previous version's process holds the lease until it handed over
                with _lease_again(ledger, r.job, deadline):
                    ledger.record(
                        r.job,
                        deployment,
                        Step.ROLLED_BACK,
                        reason=reason,
                        to_version=previous_version,
                        rollback_deployment=current[0],
                        pid=child.pid,
                    )
                print(
                    f"flowship: {r.job} {r.version} was not healthy ({reason}); rolled back "
                    f"to version {previous_version} from {savepoint} (pid {child.pid})",
                    file=sys.stderr,
                )
                return EXIT_ROLLED_BACK
            if child.poll() is not None:
                break
            time.sleep(0.5)
        msg = (
            f"rolling {r.job} back to version {previous_version} failed; see {log_file}; "
            f"restart it by hand: python {script} --upgrade-from {savepoint}"
        )
        raise JobFailedError(msg)

    def _confirm_cancelled(self, deployment: str, job_id: str | None) -> None:
        """Cancel ``job_id`` and wait until Flink confirms it ended, or raise (nothing started).

        Recorded FAILED (after ROLLING_BACK) when it cannot be confirmed: the previous version
        is then not started, since the new one may still run.
        """
        if job_id is None:
            return
        try:
            cancel_confirmed(self.target.rest_url, job_id, local=self.target.in_process)
        except ClusterError as exc:
            reason = (
                f"the new version's Flink job {job_id} was not confirmed cancelled ({exc}); the "
                "previous version was not started, so that two copies never run at once"
            )
            self.ledger.record(self.release.job, deployment, Step.FAILED, reason=reason)
            msg = (
                f"{reason}. Cancel it (flink cancel {job_id}, or stop its process), then roll "
                f"back with `flowship rollback {self.release.job}`"
            )
            raise JobFailedError(msg) from exc


def pre_upgrade_savepoint(deployments: Mapping[str, Sequence[Any]], deployment: str) -> str | None:
    """The savepoint the previous version was stopped with for ``deployment`` (None: none).

    A deployment restarted after its process died (``restarts`` names the one it restarts)
    has no savepoint of its own: the one recorded earlier in the chain is the way back. A
    replaying rollback started from an older savepoint goes back to where it stopped
    (``old_savepoint``).
    """
    seen: set[str] = set()
    while deployment in deployments and deployment not in seen:
        seen.add(deployment)
        data = merged(deployments[deployment])
        found = data.get("old_savepoint") or data.get("savepoint")
        if found:
            return str(found).removeprefix("file:")
        deployment = str(data.get("restarts", ""))
    return None


@contextlib.contextmanager
def _lease_again(ledger: Ledger, job: str, deadline: float) -> Iterator[Lease]:
    """The job's lease once its holder gave it back (waiting until ``deadline``, monotonic)."""
    while True:
        try:
            lease = ledger.acquire(job)
            break
        except LeaseHeldError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
    try:
        yield lease
    finally:
        ledger.release(lease)


def _refuse_if_alive(job: str, current: Mapping[str, Any]) -> None:
    """Raise unless the ledger's current deployment of ``job`` is known to be gone."""
    alive = deployment_liveness(current, timeout=3.0)
    where = (
        f"version {current.get('version')}, Flink job {current.get('job_id')} at "
        f"{current.get('rest_url')}"
    )
    if alive.alive:
        msg = f"{job} already runs ({where}); upgrade it with --upgrade-from savepoint"
        raise ConfigError(msg)
    if alive.unknown:
        msg = (
            f"cannot tell whether {job} still runs ({where}): {alive.seen}; nothing was "
            "started (a second copy of a job is never started while the first may run); try "
            "again when its cluster answers, or upgrade it with --upgrade-from savepoint"
        )
        raise ClusterError(msg)
