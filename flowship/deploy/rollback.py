"""``flowship rollback JOB`` / ``python job.py --rollback``: back to the version deployed before.

A rollback is an upgrade whose new code is the previous version's script, with the same
discipline:

1. Take the job's lease. The ledger names the current deployment and the one before it: its
   script, version and manifest, and the archive of its code (:mod:`flowship.deploy.archive`):
   the code that runs is that archive's, not whatever sits at the script's path now. *Before*
   means undo, not toggle: rolling back a rollback goes one more version back (v1 -> v2 -> v3,
   rollback: v2, rollback again: v1).
2. The gate in reverse: can the previous version's code read the *current* state?
   ``check_upgrade(current manifest, previous manifest)``, where the previous manifest is
   computed again from its script (what will actually run; it must still be that version).
   If not: record ``PLANNED -> REFUSED`` (``rollback_of`` names the current deployment), stop
   nothing, raise :class:`RollbackRefused` (exit 5) with the report and the way out below.
3. Record ``PLANNED`` (``kind: rollback``, ``rollback_of``) and ``CHECKED``, stop the current
   version with a savepoint (``SAVEPOINTING``, ``STOPPED``), give up the lease and start the
   previous script with ``--upgrade-from savepoint``. That process resumes this very deployment
   from ``STOPPED`` (as after a deployer crash), starts from the savepoint, records
   ``SUBMITTED``, ``RUNNING``, and watches its health (``STABLE``, or rolled back to the
   current version again). Kafka offsets travel in the savepoint: no input is lost or
   processed twice.
4. Wait until the ledger says ``STABLE`` (exit 0) or ``ROLLED_BACK`` (exit 6).

The way out when the previous version cannot read the current state (``replay=True``, the
``--from-pre-upgrade-savepoint`` flag): stop the current version with a savepoint (kept, named
in the ledger as ``old_savepoint``), and start the previous version from the savepoint it was
itself stopped with before the upgrade. That state is its own, but the input since then is read
again: everything the newer versions wrote downstream after that savepoint is written again (by
the previous version). It is an explicit opt-in for that reason.

Re-running the command after it died resumes: a rollback deployment left at ``SAVEPOINTING``,
``STOPPED`` or ``SUBMITTED`` is handed to the previous script again, which converges as an
upgrade does; one left at ``PLANNED`` or ``CHECKED`` (nothing touched) is recorded ``FAILED``
and planned again.

This module talks to Flink over REST and runs job scripts as processes; it never imports PyFlink.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowship._log import get_logger
from flowship._spawn import spawn_detached
from flowship.deploy.alive import deployment_liveness
from flowship.deploy.archive import runnable_script
from flowship.deploy.exits import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_ROLLED_BACK,
    exit_code_for,
)
from flowship.deploy.ledger import Entry, Lease, LeaseRenewer, Ledger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.savepoints import Storage, child, is_local, storage_root
from flowship.deploy.upgrade import UpgradeRefused, plan_and_check, stop_old, stop_with_savepoint
from flowship.errors import ClusterError, ConfigError, FlowshipError

log = get_logger("flowship.deploy")

#: Seconds the previous version's script gets to print its manifest.
MANIFEST_TIMEOUT = 120.0
#: Seconds, on top of the health window, the previous version gets to start and be watched.
START_TIMEOUT = 300.0

# the previous version's process is left to resume the deployment from these steps
_HANDED_OVER = (Step.SAVEPOINTING, Step.STOPPED, Step.SUBMITTED)


class RollbackRefused(UpgradeRefused):
    """The previous version cannot read the current state: nothing was stopped."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback of ``job`` goes from and to, as the ledger records it."""

    job: str
    current: str
    current_data: Mapping[str, Any]
    target: str
    target_data: Mapping[str, Any]
    #: the savepoint the target version was stopped with for the upgrade away from it
    pre_upgrade_savepoint: str | None = None

    @property
    def script(self) -> str:
        """The previous version's job script."""
        return str(self.target_data.get("script") or "")

    @property
    def version(self) -> str:
        """The version rolled back to."""
        return str(self.target_data.get("version"))


@dataclass
class Outcome:
    """How a rollback ended (``--json`` prints it)."""

    job: str
    exit_code: int
    message: str
    from_version: str | None = None
    to_version: str | None = None
    deployment: str | None = None
    savepoint: str | None = None
    replay: bool = False
    pid: int | None = None
    log: str | None = None
    report: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON object."""
        out = {k: v for k, v in self.__dict__.items() if k != "extra" and v is not None}
        out.update(self.extra)
        return out


def version_before(deployments: Mapping[str, Sequence[Entry]], deployment: str) -> str | None:
    """The deployment whose version ran before ``deployment``'s, undo-style (None: none).

    An upgrade names it in ``previous``. A rollback (``rollback_of`` X) brought back the version
    before X, so what came before it is what came before *that* one.
    """
    seen: set[str] = set()

    def before(d: str | None) -> str | None:
        if not d or d in seen or d not in deployments:
            return None
        seen.add(d)
        data = merged(deployments[d])
        if data.get("rollback_of"):
            return before(before(str(data["rollback_of"])))
        previous = data.get("previous")
        return str(previous) if previous else None

    return before(deployment)


def _pre_upgrade_savepoint(deployments: Mapping[str, Sequence[Entry]], target: str) -> str | None:
    """The savepoint the ``target`` deployment was stopped with (by the upgrade away from it)."""
    found = None
    for entries in deployments.values():
        data = merged(entries)
        if data.get("previous") == target and any(e.step is Step.STOPPED for e in entries):
            found = data.get("old_savepoint") or data.get("savepoint") or found
    return str(found) if found else None


def plan_rollback(ledger: Ledger, job: str) -> RollbackPlan:
    """The current deployment of ``job`` and the one to go back to; ConfigError if there is none."""
    deployments = ledger.deployments(job)
    if not deployments:
        msg = (
            f"unknown job {job!r}: no deployments recorded in the ledger at {ledger!r}; check "
            "the job name (fs.Job(name, ...)) and --ledger / --ledger-dir / --state-dir"
        )
        raise ConfigError(msg)
    current = ledger.current(job)
    if current is None:
        msg = f"{job!r} has no current deployment (none reached RUNNING): nothing to roll back"
        raise ConfigError(msg)
    target = version_before(deployments, current[0])
    if target is None:
        msg = (
            f"{job!r} version {current[1].get('version')} (deployment {current[0]}) has no "
            "previous version in the ledger (it was a first deploy, or a restore from a path): "
            "nothing to roll back to"
        )
        raise ConfigError(msg)
    target_data = merged(deployments[target])
    for key in ("script", "manifest", "version"):
        if not target_data.get(key):
            msg = (
                f"the ledger's deployment {target} of {job!r} (the version before the current "
                f"one) records no {key}; start that version by hand with --upgrade-from savepoint"
            )
            raise ConfigError(msg)
    return RollbackPlan(
        job,
        current[0],
        current[1],
        target,
        target_data,
        _pre_upgrade_savepoint(deployments, target),
    )


def _runnable(plan: RollbackPlan) -> RollbackPlan:
    """``plan`` with the script to run: the archived code the target version was deployed with.

    CodeArchiveError (nothing stopped yet) when neither the archive nor the code at the recorded
    path is what was deployed.
    """
    script = runnable_script(plan.target_data, plan.version)
    return dataclasses.replace(plan, target_data={**plan.target_data, "script": script})


def script_manifest(script: str, flags: Sequence[str] = ()) -> dict[str, Any]:
    """``python SCRIPT --manifest``: the manifest of the code that would run now."""
    if not Path(script).is_file():
        msg = (
            f"the previous version's script {script} (recorded in the ledger) is gone; restore "
            "it at that path, or deploy the version you want with --upgrade-from savepoint"
        )
        raise ConfigError(msg)
    argv = [sys.executable, script, *flags, "--manifest"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=MANIFEST_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"`python {script} --manifest` did not finish within {MANIFEST_TIMEOUT:g}s"
        raise ConfigError(msg) from exc
    try:
        manifest = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        manifest = None
    if not isinstance(manifest, dict):
        tail = "\n".join(done.stderr.strip().splitlines()[-10:]) or "(no stderr)"
        msg = (
            f"`python {script} --manifest` gave no manifest (exit {done.returncode}); is it "
            f"still a flowship job? stderr tail:\n{tail}"
        )
        raise ConfigError(msg)
    return manifest


def _is_running(data: Mapping[str, Any]) -> bool:
    """Whether the deployment's Flink job is alive; ClusterError if that cannot be told."""
    alive = deployment_liveness(data)
    if alive.unknown:
        msg = (
            f"cannot tell whether version {data.get('version')} (Flink job "
            f"{data.get('job_id')} at {data.get('rest_url')}) runs: {alive.seen}; nothing was "
            "changed"
        )
        raise ClusterError(msg)
    return alive.alive


def _unfinished(ledger: Ledger, job: str) -> tuple[str, list[Entry]] | None:
    """The last deployment, if it is a rollback that did not finish."""
    deployments = ledger.deployments(job)
    if not deployments:
        return None
    deployment, entries = list(deployments.items())[-1]
    if merged(entries).get("kind") != "rollback" or entries[-1].step.terminal:
        return None
    if entries[-1].step in (Step.RUNNING, Step.FAILED, Step.ROLLING_BACK):
        return None
    return deployment, entries


@dataclass(frozen=True)
class Rollback:
    """One ``flowship rollback`` run: where the ledger and state are, how to start a version."""

    ledger: Ledger
    job: str
    state_dir: Path
    flags: Sequence[str] = ()  # settings flags for the previous version's script
    replay: bool = False
    health_window_s: float = 60.0
    python: str = sys.executable
    #: where the previous version is started: "local" or the session cluster's REST URL
    target: str = "local"
    #: where checkpoints and savepoints go when not under ``state_dir`` (``--state-storage``)
    state_storage: str | None = None

    def run(self) -> Outcome:
        """Roll back, or raise (ConfigError, RollbackRefused, ClusterError, ...)."""
        from flowship.deploy.side_by_side import refuse_if_serving

        refuse_if_serving(self.ledger, self.job, "a rollback")
        with LeaseRenewer(self.ledger, self.job):
            return self._run()

    def _run(self) -> Outcome:
        if not self.ledger.entries(self.job):
            plan_rollback(self.ledger, self.job)  # unknown job: raises before the lease is made
        lease = self.ledger.acquire(self.job)
        try:
            unfinished = _unfinished(self.ledger, self.job)
            if unfinished is not None and unfinished[1][-1].step in _HANDED_OVER:
                deployment, entries = unfinished
                data = merged(entries)
                log.info("rollback.resumed", job=self.job, deployment=deployment)
                script, version = str(data["script"]), str(data["version"])
                from_version = str(data.get("previous_version"))
            else:
                plan = plan_rollback(self.ledger, self.job)
                stale = unfinished[0] if unfinished is not None else None
                deployment, script = self._stop_current(plan, lease, stale)
                version = plan.version
                from_version = str(plan.current_data.get("version"))
        finally:
            self.ledger.release(lease)
        return self._start_previous(deployment, script, version, from_version)

    def _stop_current(
        self, plan: RollbackPlan, lease: Lease, stale: str | None = None
    ) -> tuple[str, str]:
        """Gate, record, stop the current version with a savepoint.

        Returns the rollback's deployment and the script to start (the previous version's
        archived code).

        ``stale``: a rollback deployment that died before stopping anything, closed as FAILED
        once this one is known to go ahead.
        """
        self._check_target(plan)
        if not _is_running(plan.current_data):
            how = (
                f"python {plan.script} --upgrade-from {plan.pre_upgrade_savepoint}"
                if plan.pre_upgrade_savepoint
                else f"python {plan.script} --upgrade-from PATH"
            )
            msg = (
                f"nothing running to roll back: {self.job!r} version "
                f"{plan.current_data.get('version')} (Flink job {plan.current_data.get('job_id')} "
                f"at {plan.current_data.get('rest_url')}) is not running. If it died, resume it "
                "with --upgrade-from latest-checkpoint, or start the previous version from its "
                f"pre-upgrade savepoint (replays the input since then): {how}"
            )
            raise ConfigError(msg)
        plan = _runnable(plan)
        manifest = script_manifest(plan.script, self.flags)
        if str(manifest.get("version")) != plan.version:
            msg = (
                f"{plan.script} now holds version {manifest.get('version')}, not version "
                f"{plan.version} that the ledger recorded for it; restore that version's code "
                "there, or deploy the version you want with --upgrade-from savepoint"
            )
            raise ConfigError(msg)
        old = {**plan.current_data}
        marker = {
            "kind": "rollback",
            "rollback_of": plan.current,
            "rollback_to": plan.target,
            "code_changed": manifest.get("code_digest")
            != plan.target_data["manifest"].get("code_digest"),
        }
        if plan.target_data.get("code_archive"):
            marker["code_archive"] = plan.target_data["code_archive"]
        savepoints = child(storage_root(self.state_dir, self.state_storage, self.job), "savepoints")
        if stale is not None:
            self.ledger.record(
                self.job,
                stale,
                Step.FAILED,
                reason="the rollback died before stopping anything; planned again",
            )
        if not self.replay:
            try:
                deployment = plan_and_check(
                    self.ledger,
                    self.job,
                    plan.version,
                    manifest,
                    plan.script,
                    plan.current,
                    old,
                    **marker,
                )
            except UpgradeRefused as exc:
                raise RollbackRefused(exc.report) from None
            prepared = stop_old(
                self.ledger,
                self.job,
                deployment,
                plan.current,
                old,
                child(savepoints, deployment),
                lease,
            )
            log.info("rollback.stopped", job=self.job, savepoint=prepared.savepoint)
            return deployment, plan.script
        return self._stop_for_replay(plan, manifest, old, marker, savepoints), plan.script

    def _check_target(self, plan: RollbackPlan) -> None:
        """The previous version starts where the current one runs; ConfigError if not."""
        data = plan.current_data
        local = bool(data.get("pid"))  # recorded for the local target's job process only
        url = str(data.get("rest_url", "")).rstrip("/")
        if local == (self.target == "local") and (local or self.target.rstrip("/") == url):
            return
        where = "on the local target" if local else f"on the session cluster {url}"
        flag = "--target local (the default)" if local else f"--target {url}"
        msg = (
            f"{self.job!r} version {data.get('version')} runs {where}, but the rollback would "
            f"start version {plan.version} on {self.target}; pass {flag} (or the matching "
            "FLOWSHIP_TARGET); nothing was changed"
        )
        raise ConfigError(msg)

    def _stop_for_replay(
        self,
        plan: RollbackPlan,
        manifest: Mapping[str, Any],
        old: Mapping[str, Any],
        marker: Mapping[str, Any],
        savepoints: Storage,
    ) -> str:
        """Stop the current version (its savepoint kept); start from the pre-upgrade one."""
        start = plan.pre_upgrade_savepoint
        if not start:
            msg = (
                f"the ledger records no savepoint that version {plan.version} of {self.job!r} "
                "was stopped with; restore it from a savepoint or checkpoint of yours with "
                f"python {plan.script} --upgrade-from PATH (after stopping the current version)"
            )
            raise ConfigError(msg)
        metadata = Path(start.removeprefix("file://").removeprefix("file:")) / "_metadata"
        if is_local(start) and not metadata.is_file():  # elsewhere: Flink checks it
            msg = f"the pre-upgrade savepoint {start} is gone (no {metadata}); nothing was stopped"
            raise ConfigError(msg)
        deployment = self.ledger.new_deployment_id()
        self.ledger.record(
            self.job,
            deployment,
            Step.PLANNED,
            version=plan.version,
            manifest=dict(manifest),
            script=plan.script,
            code_digest=manifest.get("code_digest"),
            previous=plan.current,
            previous_version=old.get("version"),
            replay=True,
            **marker,
        )
        self.ledger.record(
            self.job,
            deployment,
            Step.CHECKED,
            note="replay: the previous version restores its own pre-upgrade savepoint; the "
            "input since that savepoint is processed again",
        )
        target = child(savepoints, deployment)
        self.ledger.record(
            self.job,
            deployment,
            Step.SAVEPOINTING,
            target=str(target),
            old_job_id=old["job_id"],
            old_rest_url=old["rest_url"],
        )
        kept = stop_with_savepoint(FlinkRest(old["rest_url"]), old["job_id"], target)
        self.ledger.record(
            self.job,
            deployment,
            Step.STOPPED,
            savepoint=start,
            old_savepoint=kept,
            replay=True,
            downstream="the previous version replays the input from the pre-upgrade savepoint: "
            "outputs the stopped version committed for that input are followed by the previous "
            f"version's, which carry the header flowship.replaces={plan.current}",
        )
        log.warning("rollback.replay", job=self.job, start=start, kept=kept)
        return deployment

    def _start_previous(
        self, deployment: str, script: str, version: str, from_version: str
    ) -> Outcome:
        """Hand the deployment to the previous version's script; wait for STABLE or else."""
        log_file = self.state_dir.resolve() / self.job / f"rollback-{deployment}.log"
        cmd = [self.python, script, *self.flags, "--upgrade-from", "savepoint"]
        planned = merged(self.ledger.deployments(self.job).get(deployment, []))
        if planned.get("replay") and planned.get("previous"):
            # the input since the pre-upgrade savepoint is processed again: its outputs name
            # the deployment whose outputs for that input they follow
            cmd += ["--flowship-replaces", str(planned["previous"])]
        log.info("rollback.start", job=self.job, deployment=deployment, script=script)
        child = spawn_detached(cmd, log_file)
        deadline = time.monotonic() + self.health_window_s + START_TIMEOUT
        outcome = Outcome(
            self.job,
            EXIT_FAILED,
            "",
            from_version=from_version,
            to_version=version,
            deployment=deployment,
            pid=child.pid,
            log=str(log_file),
        )
        exited = False
        while time.monotonic() < deadline:
            entries = self.ledger.deployments(self.job).get(deployment, [])
            data = merged(entries)
            outcome.savepoint = data.get("savepoint")
            outcome.replay = bool(data.get("replay"))
            last = entries[-1].step if entries else None
            if last is Step.STABLE:
                outcome.exit_code = EXIT_OK
                outcome.message = (
                    f"{self.job} rolled back from version {from_version} to version {version} "
                    f"(deployment {deployment}, from {data.get('savepoint')}); it is stable: "
                    f"{data.get('reason')}"
                )
                return outcome
            if last is Step.ROLLED_BACK:
                outcome.exit_code = EXIT_ROLLED_BACK
                outcome.message = (
                    f"version {version} of {self.job} was not healthy ({data.get('reason')}); "
                    f"version {from_version} was started again; see {log_file}"
                )
                return outcome
            if exited:
                break
            # one more look at the ledger after the process exited (it may have just recorded)
            exited = child.poll() is not None
            time.sleep(0 if exited else 0.5)
        else:
            outcome.message = (
                f"version {version} of {self.job} did not become stable within "
                f"{self.health_window_s + START_TIMEOUT:.0f}s; see {log_file} and "
                f"`flowship status {self.job}`"
            )
            return outcome
        outcome.message = (
            f"starting version {version} of {self.job} failed: its process exited with "
            f"{child.returncode} at step {last.value if last else 'none'}; see {log_file}. "
            "The version before was stopped with a savepoint; "
            f"`flowship history {self.job} --json` names it (old_savepoint / savepoint)"
        )
        return outcome


def refused_advice(job: str, ledger: Ledger) -> str:
    """How to go back anyway, when the previous version cannot read the current state."""
    try:
        plan = plan_rollback(ledger, job)
    except ConfigError:
        return ""
    where = plan.pre_upgrade_savepoint or "(none recorded)"
    return (
        f"version {plan.version} cannot read the state of version "
        f"{plan.current_data.get('version')}: nothing was stopped. To go back anyway, restore "
        f"version {plan.version} from the savepoint it was stopped with before the upgrade "
        f"({where}) with --from-pre-upgrade-savepoint. That replays the input since that "
        "savepoint: downstream sees those outputs again (written by the older version)."
    )


def run_rollback(
    rollback: Rollback,
    as_json: bool = False,
    out: Any = None,
    err: Any = None,
) -> int:
    """Run ``rollback``, print its outcome (text or JSON) and return the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        outcome = rollback.run()
    except RollbackRefused as exc:
        advice = refused_advice(rollback.job, rollback.ledger)
        if as_json:
            print(
                json.dumps(
                    {
                        "job": rollback.job,
                        "exit_code": EXIT_REFUSED,
                        "message": advice,
                        "report": exc.report.to_json(),
                    },
                    indent=2,
                ),
                file=out,
            )
        else:
            print(str(exc.report), file=out)
        print(f"flowship rollback: refused: {advice}", file=err)
        return EXIT_REFUSED
    except FlowshipError as exc:
        code = exit_code_for(exc)
        if as_json:
            print(json.dumps({"job": rollback.job, "exit_code": code, "error": str(exc)}), file=out)
        print(f"flowship rollback: error: {exc}", file=err)
        return code
    if as_json:
        print(json.dumps(outcome.to_json(), indent=2), file=out)
    # stdout holds only the JSON with --json; the message goes to stderr then
    to = err if outcome.exit_code or as_json else out
    print(f"flowship rollback: {outcome.message}", file=to)
    return outcome.exit_code
