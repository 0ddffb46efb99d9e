"""``job.main()``: read the flags, then hand the job to the deployment engine (or the dry run).

This module dispatches; the deployment sequence itself is :mod:`flowship.deploy.engine`, which
runs the job on a target: :class:`~flowship.job._local.LocalTarget` (an embedded mini-cluster in
this process) or :class:`~flowship.job._remote.ClusterTarget` (a Flink session cluster). Exit
codes: :mod:`flowship.deploy.exits` (documented in docs/reference/cli.md).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from flowship._log import configure_for_cli, get_logger
from flowship.control import retire_instances, rules_in_force
from flowship.deploy.diff import DiffPolicy
from flowship.deploy.engine import Engine, Policy, Release, RulesReader
from flowship.deploy.exits import EXIT_OK, EXIT_REFUSED, exit_code_for
from flowship.deploy.rollback import Rollback, run_rollback
from flowship.deploy.savepoints import restore_path
from flowship.deploy.side_by_side import lane_of, parse_partitions
from flowship.deploy.upgrade import AlreadyDeployed, UpgradeRefused
from flowship.errors import ConfigError, FlowshipError
from flowship.job import _dry_run
from flowship.job._blue_green import Verdicts, run_blue_green
from flowship.job._graph import graph_of
from flowship.job._local import LocalTarget
from flowship.job._remote import ClusterTarget
from flowship.job._settings import Settings, build_parser, settings_from_args
from flowship.job._shadow import run_shadow

if TYPE_CHECKING:
    from flowship.job._job import Job

log = get_logger("flowship.job")


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
        # the lane of the deployment this run continues (a promoted canary's, say); the
        # manifest too is that lane's: its sink uids are what a rollback's or `flowship
        # check`'s gate holds against the running version's
        ledger = settings.open_ledger()
        try:
            job.lane = lane_of(ledger, job.name)
        finally:
            ledger.close()
        if args.manifest:
            manifest = job.manifest(settings.execution_mode, graph_of(job, settings))
            print(json.dumps(manifest, indent=2, sort_keys=True))
            return EXIT_OK
        if args.strategy != "in-place":
            return run_blue_green(job, settings, argv, _check_blue_green(args))
        if args.max_diff_rate is not None:
            msg = "--max-diff-rate judges a --strategy blue-green or canary upgrade; give one"
            raise ConfigError(msg)
        canary = parse_partitions(args.canary, "--canary") if args.canary is not None else None
        beside = args.shadow or canary is not None
        if beside and (args.dry_run or args.flowship_rehearsal is not None):
            msg = "--shadow and --dry-run do not go together: a shadow is a dry run that stays"
            raise ConfigError(msg)
        if args.flowship_rehearsal is not None or args.dry_run:
            if args.flowship_rehearsal is not None:  # the dry run's child process
                restore = restore_path(args.upgrade_from)
                return _dry_run.run_rehearsal(job, settings, restore, args.flowship_rehearsal)
            return _dry_run.dry_run(job, settings, argv, args.upgrade_from, args.json)
        if beside:
            if args.upgrade_from is not None or args.rollback or settings.bounded:
                msg = (
                    "--shadow and --canary go alone (not with --upgrade-from, --rollback or "
                    "--bounded)"
                )
                raise ConfigError(msg)
            return run_shadow(job, settings, argv, canary=canary)
        if args.rollback or args.from_pre_upgrade_savepoint:
            return _rollback(job, settings, args, argv)
        if args.upgrade_from in ("savepoint", "latest-checkpoint"):
            from_checkpoint = args.upgrade_from == "latest-checkpoint"
            # a replay `flowship rollback --from-pre-upgrade-savepoint` handed over
            replaces = args.flowship_replaces
            return _engine(job, settings, argv, replaces=replaces).upgrade(from_checkpoint)
        restore = restore_path(args.upgrade_from)
        rollback_of = args.flowship_rollback_of
        return _engine(job, settings, argv, replaces=rollback_of).deploy(restore, rollback_of)
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


def _check_blue_green(args: Any) -> Verdicts:
    """What ``--strategy blue-green`` judges (its diff policy, from the verdict flags).

    ConfigError unless it comes with ``--upgrade-from savepoint`` only and the flags make sense.
    """
    if args.max_diff_rate is not None and not 0 <= args.max_diff_rate <= 1:
        msg = f"--max-diff-rate {args.max_diff_rate:g} is not a fraction between 0 and 1"
        raise ConfigError(msg)
    if args.min_pairs < 0 or args.verdict_timeout_s <= 0:
        msg = "--min-pairs cannot be negative and --verdict-timeout-s must be positive"
        raise ConfigError(msg)
    strategy = args.strategy
    if args.upgrade_from != "savepoint":
        given = "none" if args.upgrade_from is None else repr(args.upgrade_from)
        msg = (
            f"--strategy {strategy} upgrades the running version: give --upgrade-from savepoint "
            f"(given: {given}; a savepoint of the running version is taken without stopping it)"
        )
        raise ConfigError(msg)
    canary = None
    if strategy == "canary":
        if args.canary is None:
            msg = "--strategy canary needs the partitions it serves first, e.g. --canary 0,3"
            raise ConfigError(msg)
        canary = parse_partitions(args.canary, "--canary")
    clashing = [
        flag
        for flag, given in (
            ("--shadow", args.shadow),
            ("--canary", args.canary is not None and strategy != "canary"),
            ("--dry-run", args.dry_run),
            ("--rollback", args.rollback),
            ("--bounded", args.bounded),
        )
        if given
    ]
    if clashing:
        msg = f"--strategy {strategy} does not go with {', '.join(clashing)}"
        raise ConfigError(msg)
    policy = (
        None
        if args.max_diff_rate is None
        else DiffPolicy(min_pairs=args.min_pairs, max_diff_rate=args.max_diff_rate)
    )
    return Verdicts(policy, args.verdict_timeout_s, canary)


def _rollback(job: Job, settings: Settings, args: Any, argv: list[str]) -> int:
    """``--rollback``: back to the version deployed before (flowship/deploy/rollback.py)."""
    if not args.rollback or args.upgrade_from is not None:
        msg = "--rollback goes alone (--from-pre-upgrade-savepoint needs it; --upgrade-from not)"
        raise ConfigError(msg)
    own = ("--rollback", "--from-pre-upgrade-savepoint", "--json")
    rollback = Rollback(
        settings.open_ledger(),
        job.name,
        settings.state_dir,
        flags=[a for a in argv if a not in own],
        replay=args.from_pre_upgrade_savepoint,
        health_window_s=settings.health_window_s,
        target=settings.target,
        state_storage=settings.state_storage,
    )
    return run_rollback(rollback, as_json=bool(getattr(args, "json", False)))


def _retire_stopped(job: Job, settings: Settings, version: str | None) -> None:
    """The old version is stopped: say goodbye on the control topic for its instances.

    Only ``version``'s (all when not known): a shadow of another version runs on.

    A version stopped with a savepoint does not always close its operators' Python side; a
    ``flowship flag set`` would otherwise wait for its silent instances until their beats aged
    out. Best effort: the live window covers a failure here.
    """
    if not job.control:
        return
    try:
        gone = retire_instances(settings.kafka_bootstrap, job.control_topic, version)
    except FlowshipError as exc:
        log.warning("control.retire_failed", job=job.name, error=str(exc))
        return
    log.info("control.retired", job=job.name, instances=len(gone))


def _rules_reader(job: Job, settings: Settings) -> RulesReader:
    """For the gate: a function that reads the flag rules in force on the job's control topic."""

    def read() -> dict[str, Any]:
        return rules_in_force(settings.kafka_bootstrap, job.control_topic)

    return read


def _engine(job: Job, settings: Settings, argv: list[str], replaces: str | None = None) -> Engine:
    """The deployment engine for this version on the settings' target (its graph built now).

    ``replaces``: the deployment whose input this run replays from the pre-upgrade savepoint
    (an automatic rollback's failed one, or the one a replay rollback stopped); its outputs
    say so, header ``flowship.replaces``.

    The graph is built before anything is stopped or recorded: an upgrade's gap between the old
    version's last output and this one's first is then the savepoint plus the start-up.
    """
    target: LocalTarget | ClusterTarget = (
        LocalTarget(job, settings, replaces)
        if settings.is_local
        else ClusterTarget(job, settings, replaces)
    )
    # the gate compares the graph Flink will run, not only what flowship declared
    manifest = job.manifest(settings.execution_mode, target.graph)
    return Engine(
        settings.open_ledger(),
        Release(job.name, job.version, manifest, str(job.script)),
        target,
        Policy(
            settings.state_dir,
            health_window_s=settings.health_window_s,
            health_checkpoints=settings.health_checkpoints,
            health=settings.health,
            bounded=settings.bounded,
            argv=argv,
            state_storage=settings.state_storage,
        ),
        rules=_rules_reader(job, settings),
        retire=lambda version: _retire_stopped(job, settings, version),
    )
