"""``job.main()``: run on the embedded mini-cluster, or submit to a Flink session cluster.

Exit codes (documented in docs/reference/cli.md):

==  ===========================================================
0   the job finished (bounded) or was submitted (cluster target)
2   bad input: invalid flags, settings or job definition
3   the job failed or could not be submitted
4   a cluster or JVM artifact could not be reached / found
5   ``--upgrade-from savepoint`` refused: the new code cannot read the running version's
    state (nothing was stopped; the ledger records REFUSED with the report)
6   the upgraded version was not healthy within the window: the previous version was started
    again from the pre-upgrade savepoint (the ledger records ROLLED_BACK with the reason)
7   another deployment of this job is in progress (it holds the job's lease)
8   ``--dry-run``: the rehearsal failed (state that does not read with this code, or the
    rehearsal job failed); nothing production uses was changed
==  ===========================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowship._log import configure_for_cli, get_logger
from flowship._spawn import spawn_detached, without_flags
from flowship.deploy.ledger import Lease, LeaseHeldError, Ledger, LocalLedger
from flowship.deploy.machine import Step
from flowship.deploy.upgrade import AlreadyDeployed, UpgradeRefused
from flowship.errors import (
    ClusterError,
    ConfigError,
    FlowshipError,
    JobFailedError,
    MissingJarError,
)
from flowship.job._settings import Settings, build_parser, settings_from_args

if TYPE_CHECKING:
    from flowship.job._job import Job

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_ROLLED_BACK = 6
EXIT_BUSY = 7
EXIT_DRY_RUN_FAILED = 8

log = get_logger("flowship.job")


def exit_code_for(exc: FlowshipError) -> int:
    """Map a flowship error to the documented exit code."""
    if isinstance(exc, ConfigError):
        return EXIT_BAD_INPUT
    if isinstance(exc, LeaseHeldError):
        return EXIT_BUSY
    if isinstance(exc, (ClusterError, MissingJarError)):
        return EXIT_UNREACHABLE
    return EXIT_JOB_FAILED


def run_main(job: Job, argv: list[str]) -> int:
    """Parse ``argv`` and run ``job``; return the process exit code."""
    configure_for_cli()
    parser = build_parser(
        prog=job.script.name,
        description=job.description or f"flowship job {job.name} version {job.version}",
    )
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        if args.manifest:
            print(json.dumps(job.manifest(settings.execution_mode), indent=2, sort_keys=True))
            return EXIT_OK
        if args.flowship_rehearsal is not None or args.dry_run:
            from flowship.job import _dry_run

            if args.flowship_rehearsal is not None:  # the dry run's child process
                restore = restore_path(args.upgrade_from)
                return _dry_run.run_rehearsal(job, settings, restore, args.flowship_rehearsal)
            return _dry_run.dry_run(job, settings, argv, args.upgrade_from, args.json)
        if args.rollback or args.from_pre_upgrade_savepoint:
            return _rollback(job, settings, args, argv)
        if args.upgrade_from in ("savepoint", "latest-checkpoint"):
            from_checkpoint = args.upgrade_from == "latest-checkpoint"
            if settings.is_local:
                return _upgrade_local(job, settings, argv, from_checkpoint)
            return _submit_to_cluster(
                job, settings, argv, upgrade=True, from_checkpoint=from_checkpoint
            )
        restore = restore_path(args.upgrade_from)
        if settings.is_local:
            return _deploy_local(job, settings, restore, args.flowship_rollback_of)
        return _submit_to_cluster(job, settings, argv, restore, args.flowship_rollback_of)
    except AlreadyDeployed as exc:
        print(f"flowship: {job.name}: {exc}; nothing to do", file=sys.stderr)
        return EXIT_OK
    except UpgradeRefused as exc:
        print(str(exc.report))
        print(
            f"flowship: upgrade of {job.name} to version {job.version} refused: nothing was "
            "stopped; fix the problems above (see `flowship check`)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    except FlowshipError as exc:
        log.error(
            "job.error",
            job=job.name,
            version=job.version,
            error=str(exc),
            error_type=type(exc).__name__,
        )
        print(f"flowship: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def _rollback(job: Job, settings: Settings, args: Any, argv: list[str]) -> int:
    """``--rollback``: back to the version deployed before (flowship/deploy/rollback.py)."""
    from flowship.deploy.rollback import Rollback, run_rollback

    if not args.rollback or args.upgrade_from is not None:
        msg = "--rollback goes alone (--from-pre-upgrade-savepoint needs it; --upgrade-from not)"
        raise ConfigError(msg)
    own = ("--rollback", "--from-pre-upgrade-savepoint", "--json")
    rollback = Rollback(
        LocalLedger(settings.ledger_path),
        job.name,
        settings.state_dir,
        flags=[a for a in argv if a not in own],
        replay=args.from_pre_upgrade_savepoint,
        health_window_s=settings.health_window_s,
        target=settings.target,
    )
    return run_rollback(rollback, as_json=bool(getattr(args, "json", False)))


def _retire_stopped(job: Job, settings: Settings) -> None:
    """The old version is stopped: say goodbye on the control topic for its instances.

    A version stopped with a savepoint does not always close its operators' Python side; a
    ``flowship flag set`` would otherwise wait for its silent instances until their beats aged
    out. Best effort: the live window covers a failure here.
    """
    if not job.control:
        return
    from flowship.control import retire_instances

    try:
        gone = retire_instances(settings.kafka_bootstrap, job.control_topic)
    except FlowshipError as exc:
        log.warning("control.retire_failed", job=job.name, error=str(exc))
        return
    log.info("control.retired", job=job.name, instances=len(gone))


def _rules_reader(job: Job, settings: Settings) -> Any:
    """For the gate: a function that reads the flag rules in force on the job's control topic."""

    def read() -> dict[str, Any]:
        from flowship.control import rules_in_force

        return rules_in_force(settings.kafka_bootstrap, job.control_topic)

    return read


def restore_path(given: str | None) -> str | None:
    """Validate ``--upgrade-from PATH``: a savepoint/checkpoint directory holding ``_metadata``."""
    if given is None:
        return None
    path = Path(given.removeprefix("file://")).expanduser()
    if not (path / "_metadata").is_file():
        msg = (
            f"--upgrade-from {given}: no savepoint or checkpoint there (expected a directory "
            "holding _metadata, e.g. .flowship/state/JOB/savepoints/savepoint-xxxx); nothing "
            "was started"
        )
        raise ConfigError(msg)
    from flowship.deploy.savepoints import check_metadata

    check_metadata(path / "_metadata", given)
    return path.resolve().as_uri()


def _upgrade_local(
    job: Job, settings: Settings, argv: list[str], from_checkpoint: bool = False
) -> int:
    """Gate, stop the running version with a savepoint, then run this version from it."""
    from flowship.deploy.upgrade import prepare_upgrade

    ledger = LocalLedger(settings.ledger_path)
    # build this version's graph before anything is stopped (the mini-cluster itself can only
    # start once the old version has let go of the REST port)
    env = _local_env(job, settings)
    prepared = prepare_upgrade(
        ledger,
        job.name,
        job.version,
        job.manifest(settings.execution_mode),
        str(job.script),
        settings.state_dir.resolve() / job.name / "savepoints",
        settings.state_dir.resolve() / job.name / "checkpoints",
        from_checkpoint=from_checkpoint,
        rules=_rules_reader(job, settings),
    )
    # the old local version exits once stopped; wait for its REST port before reusing it
    wait_port_free(settings.rest_port, timeout=60)
    _retire_stopped(job, settings)
    return _run_local(
        job,
        settings,
        ledger,
        prepared.deployment,
        prepared.lease,
        restore=prepared.savepoint.removeprefix("file:"),
        argv=argv,
        env=env,
    )


def _local_env(job: Job, settings: Settings) -> Any:
    """The job's graph in an environment for the embedded mini-cluster (not started yet)."""
    from flowship.job._runtime import flink_options, local_options, make_env

    env = make_env({**flink_options(job, settings), **local_options(settings)})
    job.build(env, settings)
    return env


def _deploy_local(
    job: Job, settings: Settings, restore: str | None, rollback_of: str | None = None
) -> int:
    """A first deploy (or a restore from an explicit PATH), recorded in the ledger."""
    ledger = LocalLedger(settings.ledger_path)
    deployment, lease = _begin_deployment(job, settings, ledger, restore, rollback_of)
    return _run_local(job, settings, ledger, deployment, lease, restore)


def _begin_deployment(
    job: Job, settings: Settings, ledger: Ledger, restore: str | None, rollback_of: str | None
) -> tuple[str, Lease]:
    """Take the lease and record PLANNED for a first deploy, a restore, or a rollback.

    Refused (ConfigError) when the ledger's current deployment of the job still runs: a
    running job is changed with --upgrade-from savepoint, never by starting a second one.
    """
    lease = ledger.acquire(job.name)
    try:
        current = ledger.current(job.name)
        if current is not None and _still_running(current[1]):
            msg = (
                f"{job.name} already runs (version {current[1].get('version')}, Flink job "
                f"{current[1].get('job_id')} at {current[1].get('rest_url')}); upgrade it "
                "with --upgrade-from savepoint"
            )
            raise ConfigError(msg)
        deployment = ledger.new_deployment_id()
        ledger.record(
            job.name,
            deployment,
            Step.PLANNED,
            version=job.version,
            manifest=job.manifest(settings.execution_mode),
            script=str(job.script),
            restored_from=restore,
            rollback_of=rollback_of,
        )
    except BaseException:
        ledger.release(lease)
        raise
    return deployment, lease


def _still_running(data: dict[str, Any]) -> bool:
    from flowship.deploy.rest import FlinkRest

    try:
        return bool(
            FlinkRest(data["rest_url"], timeout=3).job(data["job_id"])["state"] == "RUNNING"
        )
    except (ClusterError, KeyError):
        return False


def wait_port_free(port: int, timeout: float) -> None:
    """Wait until nothing listens on loopback ``port`` any more."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)
    msg = f"REST port {port} is still in use after {timeout:.0f}s; is another job running?"
    raise ClusterError(msg)


def _run_local(
    job: Job,
    settings: Settings,
    ledger: Ledger,
    deployment: str,
    lease: Lease,
    restore: str | None = None,
    argv: list[str] | None = None,
    env: Any = None,
) -> int:
    """Run the job in this process; record SUBMITTED and RUNNING; block until it ends.

    ``env`` is the job's graph if it was built already (see ``_local_env``). After an upgrade
    (``argv`` given), the new version is watched until stable, or rolled back.
    """
    from flowship.deploy.rest import FlinkRest
    from flowship.job._runtime import restore_options, set_options

    started = time.monotonic()
    rest_url = f"http://127.0.0.1:{settings.rest_port}"
    try:
        if restore is not None and not restore.startswith("file:"):
            restore = Path(restore).resolve().as_uri()
        if env is None:
            env = _local_env(job, settings)
        set_options(env, restore_options(restore, job))
        if ledger.last_step(job.name, deployment) is not Step.SUBMITTED:
            ledger.record(
                job.name, deployment, Step.SUBMITTED, rest_url=rest_url, restored_from=restore
            )
        log.info(
            "job.start",
            job=job.name,
            version=job.version,
            target="local",
            rest=rest_url,
            mode=settings.execution_mode,
            bounded=settings.bounded,
            restored_from=restore,
            deployment=deployment,
        )
        try:
            client = env.execute_async(f"{job.name}@{job.version}")
            job_id = str(client.get_job_id())
            _wait_running(FlinkRest(rest_url), job_id, settings, client)
        except Exception as exc:  # Py4JJavaError and friends: translate at the boundary
            reason = _java_error(job, exc, restore)
            ledger.record(job.name, deployment, Step.FAILED, reason=reason)
            raise JobFailedError(reason) from exc
        ledger.record(
            job.name,
            deployment,
            Step.RUNNING,
            job_id=job_id,
            rest_url=rest_url,
            pid=os.getpid(),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        log.info(
            "job.running", job=job.name, version=job.version, job_id=job_id, deployment=deployment
        )
        if restore is not None and not settings.bounded:
            _hand_over(FlinkRest(rest_url), job, job_id)
        if argv is not None and not settings.bounded:
            from flowship.deploy.health import watch

            health = watch(
                FlinkRest(rest_url), job_id, settings.health_window_s, settings.health_checkpoints
            )
            if not health.stable:
                return _roll_back(
                    job, settings, ledger, deployment, lease, job_id, rest_url, health.reason, argv
                )
            ledger.record(
                job.name,
                deployment,
                Step.STABLE,
                reason=health.reason,
                checkpoints=health.checkpoints,
                waited_s=round(health.waited_s, 1),
            )
            log.info("upgrade.stable", job=job.name, version=job.version, reason=health.reason)
    finally:
        ledger.release(lease)
    try:
        client.get_job_execution_result().result()
    except Exception as exc:
        raise JobFailedError(_java_error(job, exc)) from exc
    # the result arrives when the input is exhausted (--bounded) or when the job was stopped
    # with a savepoint (an upgrade): either way this process is done, successfully
    log.info(
        "job.finished",
        job=job.name,
        version=job.version,
        duration_ms=int((time.monotonic() - started) * 1000),
        note="input exhausted, or stopped with a savepoint for an upgrade",
    )
    return EXIT_OK


def _roll_back(
    job: Job,
    settings: Settings,
    ledger: Ledger,
    deployment: str,
    lease: Lease,
    job_id: str,
    rest_url: str,
    reason: str,
    argv: list[str],
) -> int:
    """Cancel the unhealthy new version, start the previous one from the pre-upgrade savepoint."""
    from flowship.deploy.rest import FlinkRest

    ledger.record(job.name, deployment, Step.FAILED, reason=reason)
    log.error("upgrade.failed", job=job.name, version=job.version, reason=reason)
    entries = ledger.deployments(job.name)[deployment]
    data: dict[str, Any] = {}
    for e in entries:
        data.update(e.data)
    previous = ledger.deployments(job.name).get(str(data.get("previous")), [])
    script = next((e.data["script"] for e in previous if "script" in e.data), None)
    previous_version = next((e.data["version"] for e in previous if "version" in e.data), None)
    # a replaying rollback started from an older savepoint: go back to where it stopped
    savepoint = str(data.get("old_savepoint") or data["savepoint"]).removeprefix("file:")
    ledger.record(
        job.name,
        deployment,
        Step.ROLLING_BACK,
        to_version=previous_version,
        from_savepoint=savepoint,
    )
    with contextlib.suppress(ClusterError):
        FlinkRest(rest_url).cancel(job_id)
    if settings.is_local:
        wait_port_free(settings.rest_port, timeout=60)
    ledger.release(lease)
    if script is None:
        msg = (
            f"cannot roll back {job.name}: the ledger has no script for the previous "
            f"deployment; restart it by hand with --upgrade-from {savepoint}"
        )
        raise JobFailedError(msg)
    passthrough = _without_upgrade_flag(argv)
    cmd = [
        sys.executable,
        script,
        *passthrough,
        "--upgrade-from",
        savepoint,
        "--flowship-rollback-of",
        deployment,
    ]
    log_file = settings.state_dir.resolve() / job.name / f"rollback-{deployment}.log"
    child = spawn_detached(cmd, log_file)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        current = ledger.current(job.name)
        if current is not None and current[1].get("rollback_of") == deployment:
            ledger.record(
                job.name,
                deployment,
                Step.ROLLED_BACK,
                reason=reason,
                to_version=previous_version,
                rollback_deployment=current[0],
                pid=child.pid,
            )
            print(
                f"flowship: {job.name} {job.version} was not healthy ({reason}); rolled back "
                f"to version {previous_version} from {savepoint} (pid {child.pid})",
                file=sys.stderr,
            )
            return EXIT_ROLLED_BACK
        if child.poll() is not None:
            break
        time.sleep(0.5)
    msg = (
        f"rolling {job.name} back to version {previous_version} failed; see {log_file}; "
        f"restart it by hand: python {script} --upgrade-from {savepoint}"
    )
    raise JobFailedError(msg)


def _without_upgrade_flag(argv: list[str]) -> list[str]:
    return without_flags(argv, valued=["--upgrade-from"])


def _wait_running(rest: Any, job_id: str, settings: Settings, client: Any) -> None:
    """Until the job is RUNNING (or already FINISHED, for a short bounded run)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            state = rest.job(job_id)["state"]
        except ClusterError:
            state = "UNKNOWN"
        if state in ("RUNNING", "FINISHED"):
            return
        if state in ("FAILED", "CANCELED"):
            break
        time.sleep(0.2)
    client.get_job_execution_result().result()  # raises the job's failure, if it failed


def _wait_cluster_running(rest: Any, job_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = rest.job(job_id)["state"]
        if state == "RUNNING":
            return
        if state in ("FAILED", "CANCELED", "FINISHED"):
            break
        time.sleep(0.3)
    msg = f"Flink job {job_id} is {state}, not RUNNING (see {rest.url}/jobs/{job_id}/exceptions)"
    raise JobFailedError(msg)


def _submit_to_cluster(
    job: Job,
    settings: Settings,
    argv: list[str],
    restore: str | None = None,
    rollback_of: str | None = None,
    upgrade: bool = False,
    from_checkpoint: bool = False,
) -> int:
    """Deploy to a session cluster: a first deploy, a restore from PATH, or a checked upgrade."""
    from flowship.deploy.rest import FlinkRest
    from flowship.job._remote import PreparedSubmission

    rest = FlinkRest(settings.target)
    rest.overview()  # fail fast, with a clear error, if unreachable
    ledger = LocalLedger(settings.ledger_path)
    # build the new graph before anything is stopped: the gap between the old version's last
    # output and the new version's first is then the savepoint plus the cluster's own start-up
    submission = PreparedSubmission(job, settings)
    if upgrade:
        from flowship.deploy.upgrade import prepare_upgrade

        prepared = prepare_upgrade(
            ledger,
            job.name,
            job.version,
            job.manifest(settings.execution_mode),
            str(job.script),
            settings.state_dir.resolve() / job.name / "savepoints",
            settings.state_dir.resolve() / job.name / "checkpoints",
            from_checkpoint=from_checkpoint,
            rules=_rules_reader(job, settings),
        )
        deployment, lease = prepared.deployment, prepared.lease
        restore = prepared.savepoint.removeprefix("file://").removeprefix("file:")
        _retire_stopped(job, settings)
    else:
        deployment, lease = _begin_deployment(job, settings, ledger, restore, rollback_of)
    try:
        started = time.monotonic()
        if ledger.last_step(job.name, deployment) is not Step.SUBMITTED:
            ledger.record(
                job.name,
                deployment,
                Step.SUBMITTED,
                rest_url=settings.target,
                restored_from=restore,
            )
        try:
            job_id = submission.submit(restore)
            _wait_cluster_running(rest, job_id)
        except JobFailedError as exc:
            ledger.record(job.name, deployment, Step.FAILED, reason=str(exc)[:2000])
            raise
        ledger.record(
            job.name,
            deployment,
            Step.RUNNING,
            job_id=job_id,
            rest_url=settings.target,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        log.info(
            "job.submitted",
            job=job.name,
            version=job.version,
            job_id=job_id,
            target=settings.target,
            deployment=deployment,
        )
        print(
            f"flowship: job {job.name}@{job.version} submitted to {settings.target} as {job_id}",
            flush=True,
        )
        if restore is not None and not settings.bounded:
            _hand_over(rest, job, job_id)
        if upgrade:
            from flowship.deploy.health import watch

            health = watch(rest, job_id, settings.health_window_s, settings.health_checkpoints)
            if not health.stable:
                return _roll_back(
                    job,
                    settings,
                    ledger,
                    deployment,
                    lease,
                    job_id,
                    settings.target,
                    health.reason,
                    argv,
                )
            ledger.record(
                job.name,
                deployment,
                Step.STABLE,
                reason=health.reason,
                checkpoints=health.checkpoints,
                waited_s=round(health.waited_s, 1),
            )
            log.info("upgrade.stable", job=job.name, version=job.version, reason=health.reason)
    finally:
        ledger.release(lease)
    return EXIT_OK


def _hand_over(rest: Any, job: Job, job_id: str) -> None:
    """Back-to-back checkpoints while a restored job starts: its first output commits sooner."""
    from flowship.deploy.health import hand_over

    started = time.monotonic()
    count, first_s = hand_over(rest, job_id)
    log.info(
        "job.handover",
        job=job.name,
        version=job.version,
        job_id=job_id,
        checkpoints=count,
        first_checkpoint_ms=None if first_s is None else int(first_s * 1000),
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _java_error(job: Job, exc: BaseException, restore: str | None = None) -> str:
    text = str(exc)
    causes = re.findall(r"Caused by: ([^\n]+)", text)
    root = causes[-1] if causes else text.splitlines()[0] if text else type(exc).__name__
    restoring = (
        ""
        if restore is None
        else f" while restoring from {restore} (if the cause is about reading the savepoint, "
        "it is corrupt or incomplete: start from another savepoint or a retained checkpoint)"
    )
    return (
        f"job {job.name}@{job.version} failed{restoring}: {root} (full Java trace in the log "
        "above; a Python error in an operator appears as the last 'Caused by')"
    )
