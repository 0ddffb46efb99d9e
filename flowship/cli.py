"""The ``flowship`` command line.

Subcommands::

    flowship check OLD NEW [--json]   can NEW take over from OLD (running) with its savepoint?
    flowship manifest JOB.py          print a job's manifest (JSON)
    flowship status JOB / history JOB the ledger: current deployment, every deployment
    flowship rollback JOB             back to the version deployed before the running one
    flowship ledger copy JOB --from A --to B   move a job's history from one ledger to another
    flowship flag set|show|history JOB   feature flags and output routing (control topic)
    flowship diff JOB                 a shadow's (``--shadow``) outputs against production's
    flowship promote JOB [--partitions 1,2]   the canary serves these input partitions too (all)
    flowship abort JOB                production back to the running version; stop the shadow
    flowship demote JOB               flip back: the running version serves everything again
    flowship retire JOB VERSION       stop VERSION once the promoted version serves everything

``OLD`` and ``NEW`` are each a job file (``.py``: its manifest is computed by running
``python JOB.py --manifest`` in a subprocess, so two versions of one job never share a process)
or a saved manifest (``.json``).

Exit codes:

==  =======================================================================
0   compatible (``check``), or done
1   incompatible: the report lists what blocks the upgrade and how to fix it
2   bad input: missing file, unreadable manifest, not a job, invalid flags
3   a job failed (``rollback``: the previous version did not start)
4   a cluster (Flink, Kafka) or JVM artifact unreachable
5   ``rollback`` refused: the previous version cannot read the current state
6   ``rollback``: the previous version was not healthy; the current one runs again
7   ``rollback``, ``ledger copy``: another deployment of the job is in progress (it holds
    the lease), or the lease was lost on the way
9   ``flag set``: the change was not agreed by every running instance (in force nowhere)
10  ``diff`` with ``--max-diff-rate``: the shadow's outputs differ beyond the policy
11  ``diff`` with ``--max-diff-rate``: too few inputs compared yet (undecided)
==  =======================================================================
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowship.deploy.exits import (
    EXIT_BAD_INPUT,
    EXIT_INCOMPATIBLE,
    EXIT_NOT_AGREED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    exit_code_for,
)
from flowship.deploy.health import verdict_open_since
from flowship.errors import ClusterError, ConfigError, ControlError, FlowshipError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INCOMPATIBLE", "EXIT_OK", "load_manifest", "main"]

#: Seconds a job file gets to print its manifest.
MANIFEST_TIMEOUT = 120.0

_EPILOG = """\
exit codes:
  0  compatible (check) / done
  1  incompatible (check): the report says what, where and how to fix it
  2  bad input: missing file, unreadable manifest, not a job, invalid flags, unknown job,
     no previous version or nothing running (rollback)
  3  rollback: the previous version did not start
  4  a cluster is unreachable
  5  rollback refused: the previous version cannot read the current state (nothing stopped)
  6  rollback: the previous version was not healthy; the current version was started again
  7  rollback: another deployment of the job is in progress
  9  flag set: not every running instance acknowledged the change; it is in force nowhere
 10  diff --max-diff-rate: the shadow's outputs differ beyond the policy (verdict fail)
 11  diff --max-diff-rate: too few inputs compared yet to judge (undecided)
"""


def load_manifest(path: str | Path, timeout: float = MANIFEST_TIMEOUT) -> dict[str, Any]:
    """The manifest of a job file (``.py``, run in a subprocess) or a saved one (``.json``).

    Raises :class:`~flowship.errors.ConfigError` naming the file when it cannot be had.
    """
    file = Path(path)
    if not file.is_file():
        msg = f"{file}: no such file (give a job .py file or a saved manifest .json)"
        raise ConfigError(msg)
    if file.suffix == ".py":
        text = _run_job_manifest(file, timeout)
    elif file.suffix == ".json":
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"{file}: cannot read the manifest: {exc}"
            raise ConfigError(msg) from exc
    else:
        msg = f"{file}: expected a job file (.py) or a saved manifest (.json)"
        raise ConfigError(msg)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{file}: not a manifest, the output is not JSON ({exc}); is it a flowship job?"
        raise ConfigError(msg) from exc
    if not isinstance(manifest, dict) or "format" not in manifest:
        msg = f"{file}: not a flowship job manifest (a JSON object with a 'format' key)"
        raise ConfigError(msg)
    return manifest


def _run_job_manifest(file: Path, timeout: float) -> str:
    argv = [sys.executable, str(file), "--manifest"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        msg = f"{file}: `python {file.name} --manifest` did not finish within {timeout:g}s"
        raise ConfigError(msg) from exc
    said = [line for line in done.stderr.splitlines() if line.startswith("flowship: ")]
    if done.returncode == EXIT_BAD_INPUT and said:
        # the job's own message (a bad declaration, a schema file that does not parse)
        msg = f"{file}: " + "\n".join(line.removeprefix("flowship: ") for line in said)
        raise ConfigError(msg)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:]) or "(no stderr)"
        msg = (
            f"{file}: `python {file.name} --manifest` exited with {done.returncode}; is it a "
            f"flowship job ending with job.main()? stderr tail:\n{tail}"
        )
        raise ConfigError(msg)
    if not done.stdout.strip():
        msg = (
            f"{file}: `python {file.name} --manifest` printed nothing; is it a flowship job "
            "ending with job.main()?"
        )
        raise ConfigError(msg)
    return done.stdout


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flowship`` command."""
    parser = argparse.ArgumentParser(
        prog="flowship",
        description="Self-deploying PyFlink stream jobs with versioned Avro state.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="check that NEW can take over from OLD (the running version) and its savepoint",
        description=(
            "Compare two versions of a job: operator uids, state schemas and their stored "
            "versions, execution mode, sources and sinks. Each side is a job file (.py) or a "
            "saved manifest (.json)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("old", metavar="OLD", help="the running version: JOB.py or manifest.json")
    check.add_argument("new", metavar="NEW", help="the candidate: JOB.py or manifest.json")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    manifest = sub.add_parser(
        "manifest",
        help="print a job's manifest as JSON",
        description="Print the manifest of a job file (computed in a subprocess, no Flink run).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    manifest.add_argument("job", metavar="JOB.py", help="the job file")
    for name, text in (
        ("status", "the job's current deployment and the last one's step"),
        ("history", "every deployment of the job and its transitions"),
        ("diff", "compare the outputs of the job's shadow (--shadow) with production's"),
        (
            "abort",
            "give every input partition back to the running version, then stop the job's "
            "shadow or canary (--shadow, --canary) and retire it",
        ),
        (
            "promote",
            "the job's canary (--canary) serves more input partitions in production (all "
            "without --partitions), from an agreed cut",
        ),
        (
            "demote",
            "flip back: the running version serves every input partition again, from an agreed "
            "cut; the version beside it keeps running dark (promote flips to it again)",
        ),
        (
            "retire",
            "stop the job's running VERSION once the version beside it serves every partition; "
            "that version becomes the job's deployment",
        ),
    ):
        cmd = sub.add_parser(
            name,
            help=text,
            description=text.capitalize() + " (ledger).",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument("job", metavar="JOB", help="the job's name (fs.Job(name, ...))")
        cmd.add_argument(
            "--ledger-dir",
            type=Path,
            default=None,
            help="the ledger directory (default: .flowship/state/ledger, the "
            "job's default; env FLOWSHIP_LEDGER_DIR)",
        )
        cmd.add_argument(
            "--ledger",
            default=None,
            help="kafka://HOST:PORT[/TOPIC]: read the Kafka ledger instead of the directory "
            "(env FLOWSHIP_LEDGER)",
        )
        cmd.add_argument("--json", action="store_true", help="print JSON")
        if name == "diff":
            _add_diff_flags(cmd)
        if name == "retire":
            cmd.add_argument("version", metavar="VERSION", help="the version to stop")
        if name == "promote":
            cmd.add_argument(
                "--partitions",
                default=None,
                help="input partitions to serve as well, e.g. 1,2 (default: all)",
            )
    _add_rollback(sub)
    _add_ledger(sub)
    from flowship import _cli_flags

    _cli_flags.add_parser(sub, _EPILOG)
    return parser


def _add_rollback(sub: Any) -> None:
    from flowship.job._settings import ENV_PREFIX, Settings

    text = "roll the job back to the version deployed before the running one"
    cmd = sub.add_parser(
        "rollback",
        help=text,
        description=(
            text.capitalize() + ", from the ledger: check that the previous version can read "
            "the current state, stop the current version with a savepoint, start the previous "
            "version's script from it (--upgrade-from savepoint) and wait until it is stable. "
            "Refused (exit 5, nothing stopped) when the previous version cannot read the "
            "current state. The job flags below are passed to the previous version's script: "
            "give the ones you deploy the job with (or set FLOWSHIP_* variables)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("job", metavar="JOB", help="the job's name (fs.Job(name, ...))")
    cmd.add_argument(
        "--from-pre-upgrade-savepoint",
        action="store_true",
        help="when the previous version cannot read the current state: start it from the "
        "savepoint it was stopped with before the upgrade; REPLAYS the input since then "
        "(downstream sees those outputs again)",
    )
    cmd.add_argument("--json", action="store_true", help="print the outcome as JSON")
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{info.description} (env {ENV_PREFIX}{name.upper()})"
        if info.annotation is bool:
            cmd.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
        else:
            cmd.add_argument(flag, dest=name, default=None, help=help_text)


def _rollback(args: argparse.Namespace) -> int:
    from flowship._log import configure_for_cli
    from flowship.deploy.rollback import Rollback, run_rollback
    from flowship.job._settings import Settings, settings_from_args

    configure_for_cli()  # log events go to stderr: stdout holds the outcome (--json)
    settings = settings_from_args(args)
    flags: list[str] = []
    for name, info in Settings.model_fields.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        flags += [flag] if info.annotation is bool else [flag, str(value)]
    rollback = Rollback(
        settings.open_ledger(),
        args.job,
        settings.state_dir,
        flags=flags,
        replay=args.from_pre_upgrade_savepoint,
        health_window_s=settings.health_window_s,
        target=settings.target,
        state_storage=settings.state_storage,
    )
    return run_rollback(rollback, as_json=args.json)


def _ledger(args: argparse.Namespace) -> Any:
    import os

    from flowship.deploy.ledgers import open_ledger

    root = (
        args.ledger_dir
        or os.environ.get("FLOWSHIP_LEDGER_DIR")
        or Path(os.environ.get("FLOWSHIP_STATE_DIR", ".flowship/state")) / "ledger"
    )
    where = args.ledger if args.ledger is not None else os.environ.get("FLOWSHIP_LEDGER", "")
    ledger = open_ledger(where, Path(root))
    if not ledger.entries(args.job):
        msg = f"unknown job {args.job!r}: no deployments recorded in the ledger at {ledger!r}"
        raise ConfigError(msg)
    return ledger


def _add_ledger(sub: Any) -> None:
    text = "move a job's history from one ledger to another"
    cmd = sub.add_parser(
        "ledger",
        help=text,
        description=text.capitalize() + ".",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    copy = actions.add_parser(
        "copy",
        help="copy every entry of JOB from one ledger to another, in order",
        description=(
            "Copy every entry of JOB, in order and unchanged, from the ledger --from to the "
            "ledger --to (each a ledger directory or kafka://HOST:PORT[/TOPIC]). Both leases "
            "of the job are held meanwhile, so no deployment of it runs; refused when --to "
            "already records the job. Then deploy with the new ledger (--ledger / "
            "FLOWSHIP_LEDGER); the old one is left as it was."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("job", metavar="JOB", help="the job's name (fs.Job(name, ...))")
    copy.add_argument("--from", dest="source", required=True, help="the ledger to copy from")
    copy.add_argument("--to", dest="target", required=True, help="the ledger to copy to")


def _ledger_command(args: argparse.Namespace) -> int:
    from flowship.deploy.ledgers import open_ledger

    source = open_ledger(args.source, Path(args.source))
    target = open_ledger(args.target, Path(args.target))
    try:
        entries = source.entries(args.job)
        if not entries:
            msg = f"unknown job {args.job!r}: no deployments recorded in the ledger {source!r}"
            raise ConfigError(msg)
        with source.holding(args.job), target.holding(args.job):
            entries = source.entries(args.job)  # none can be added while the lease is held
            there = target.entries(args.job)
            if there:
                msg = (
                    f"the ledger {target!r} already records {len(there)} entries of "
                    f"{args.job!r}; a copy never merges two histories: copy to another ledger "
                    "(or topic), or keep deploying with that one"
                )
                raise ConfigError(msg)
            copied = target.import_entries(args.job, entries)
    finally:
        source.close()
        target.close()
    print(
        f"flowship ledger copy: {copied} entries of {args.job} copied from {source!r} to "
        f"{target!r}; deploy with --ledger {args.target} (FLOWSHIP_LEDGER) from now on"
    )
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from flowship.deploy.shadow import shadow_key

    ledger = _ledger(args)
    deployments = ledger.deployments(args.job)
    shadows = ledger.deployments(shadow_key(args.job))
    if args.json:
        out = {d: [e.to_json() for e in es] for d, es in deployments.items()}
        out.update({d: [e.to_json() for e in es] for d, es in shadows.items()})
        print(json.dumps(out, indent=2))
        return EXIT_OK
    both = [(d, es, False) for d, es in deployments.items()]
    both += [(d, es, True) for d, es in shadows.items()]
    for deployment, entries, shadow in sorted(both, key=lambda t: t[1][0].at):
        version = next((e.data["version"] for e in entries if "version" in e.data), "?")
        steps = " -> ".join(e.step.value for e in entries)
        rollback_of = next((e.data["rollback_of"] for e in entries if "rollback_of" in e.data), "")
        note = f" (rollback of {rollback_of})" if rollback_of else ""
        note += " (shadow)" if shadow else ""
        print(f"{deployment}  version {version}{note}: {steps}")
    return EXIT_OK


def _add_diff_flags(cmd: Any) -> None:
    cmd.add_argument(
        "--kafka-bootstrap",
        default=None,
        help="Kafka bootstrap.servers (env FLOWSHIP_KAFKA_BOOTSTRAP; default: the one the "
        "shadow was started against)",
    )
    cmd.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="FIELD",
        help="a field whose differences do not count (repeatable; also (key), (outputs))",
    )
    cmd.add_argument(
        "--abs-tol",
        type=float,
        default=0.0,
        help="numbers at most this far apart count as the same (default 0: exact)",
    )
    cmd.add_argument(
        "--rel-tol",
        type=float,
        default=0.0,
        help="numbers at most this fraction of the larger apart count as the same (default 0)",
    )
    cmd.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write a chart of where in the input each field differs (one HTML file that "
        "opens in a browser from disk; needs plotly: pip install 'flowship[report]')",
    )
    cmd.add_argument(
        "--max-diff-rate",
        type=float,
        default=None,
        help="judge: pass when at most this fraction of the compared inputs differ (exit 0), "
        "else fail (exit 10); with --min-pairs",
    )
    cmd.add_argument(
        "--min-pairs",
        type=int,
        default=1000,
        help="judge: the inputs that must have been compared before a verdict (fewer: exit 11, "
        "undecided; default 1000)",
    )


def _diff(args: argparse.Namespace) -> int:
    import os

    from flowship.deploy.diff import DiffPolicy, Tolerance
    from flowship.deploy.exits import EXIT_DIFF_FAILED, EXIT_DIFF_UNDECIDED
    from flowship.deploy.shadow import diff_shadow

    if args.abs_tol < 0 or args.rel_tol < 0 or args.min_pairs < 0:
        msg = "--abs-tol, --rel-tol and --min-pairs cannot be negative"
        raise ConfigError(msg)
    if args.max_diff_rate is not None and not 0 <= args.max_diff_rate <= 1:
        msg = f"--max-diff-rate {args.max_diff_rate:g} is not a fraction between 0 and 1"
        raise ConfigError(msg)
    bootstrap = args.kafka_bootstrap or os.environ.get("FLOWSHIP_KAFKA_BOOTSTRAP")
    result = diff_shadow(
        _ledger(args),
        args.job,
        bootstrap,
        tolerance=Tolerance(frozenset(args.ignore), args.abs_tol, args.rel_tol),
        policy=None
        if args.max_diff_rate is None
        else DiffPolicy(min_pairs=args.min_pairs, max_diff_rate=args.max_diff_rate),
    )
    if args.html is not None:
        from flowship.deploy.report import write_html

        written = write_html(result, args.html)
        print(f"flowship diff: chart written to {written}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True, default=str))
    else:
        print(result)
    if result.verdict is None or result.verdict.outcome == "pass":
        return EXIT_OK
    return EXIT_DIFF_FAILED if result.verdict.outcome == "fail" else EXIT_DIFF_UNDECIDED


def _abort(args: argparse.Namespace) -> int:
    from flowship.deploy.shadow import abort_shadow

    done = abort_shadow(_ledger(args), args.job)
    if args.json:
        print(json.dumps(done, indent=2, default=str))
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from flowship.deploy.side_by_side import parse_partitions, promote

    parts = None if args.partitions is None else parse_partitions(args.partitions, "--partitions")
    done = promote(_ledger(args), args.job, parts)
    if args.json:
        print(json.dumps(done, indent=2, default=str))
    return EXIT_OK


def _demote(args: argparse.Namespace) -> int:
    from flowship.deploy.side_by_side import demote

    done = demote(_ledger(args), args.job)
    if args.json:
        print(json.dumps(done, indent=2, default=str))
    return EXIT_OK


def _retire(args: argparse.Namespace) -> int:
    from flowship.deploy.side_by_side import retire

    done = retire(_ledger(args), args.job, args.version)
    if args.json:
        print(json.dumps(done, indent=2, default=str))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    deployments = ledger.deployments(args.job)
    last_id, last = list(deployments.items())[-1]
    current = ledger.current(args.job)
    from flowship.deploy.shadow import shadow_status

    shadow = shadow_status(ledger, args.job)
    status = {
        "job": args.job,
        "shadow": shadow,
        "current": None
        if current is None
        else {
            "deployment": current[0],
            "version": current[1].get("version"),
            "job_id": current[1].get("job_id"),
            "rest_url": current[1].get("rest_url"),
        },
        "last": {
            "deployment": last_id,
            "step": last[-1].step.value,
            "version": next((e.data["version"] for e in last if "version" in e.data), None),
            "verdict_open_since": verdict_open_since(last),
        },
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    cur = status["current"]
    print(
        f"{args.job}: "
        + (
            f"version {cur['version']} is the current deployment (Flink job "
            f"{cur['job_id']} at {cur['rest_url']})"
            if cur
            else "no deployment reached RUNNING"
        )
    )
    since = status["last"]["verdict_open_since"]
    watching = (
        ""
        if since is None
        else (
            f" (watching, verdict open since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(since))}; if its deployer "
            "is gone, run the same --upgrade-from command again to resume the watch)"
        )
    )
    print(
        f"last deployment {last_id}: version {status['last']['version']}, "
        f"{status['last']['step']}{watching}"
    )
    if shadow is not None:
        print(
            f"shadow {shadow['deployment']}: version {shadow['version']}, {shadow['step']}"
            + (
                f" (Flink job {shadow['job_id']} at {shadow['rest_url']}; serves input "
                f"partitions {shadow['serve']} in production, other outputs on side topics)"
                if shadow["step"] in ("RUNNING", "ROUTING", "ROUTED")
                else ""
            )
        )
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from flowship.deploy.check import check_upgrade

    report = check_upgrade(load_manifest(args.old), load_manifest(args.new))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report)
    return EXIT_OK if report.compatible else EXIT_INCOMPATIBLE


def _manifest(args: argparse.Namespace) -> int:
    print(json.dumps(load_manifest(args.job), indent=2, sort_keys=True))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowship`` command with ``argv`` (default: ``sys.argv[1:]``); the exit code.

    The console script exits with it (setuptools calls ``sys.exit(main())``); argparse itself
    exits with 2 on invalid flags.
    """
    from flowship._log import configure_for_cli

    args = build_parser().parse_args(None if argv is None else list(argv))
    configure_for_cli()  # log events go to stderr: stdout holds the outcome (--json)
    handlers = {
        "check": _check,
        "manifest": _manifest,
        "status": _status,
        "history": _history,
        "rollback": _rollback,
        "flag": _flag,
        "ledger": _ledger_command,
        "diff": _diff,
        "abort": _abort,
        "promote": _promote,
        "retire": _retire,
        "demote": _demote,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"flowship {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ClusterError as exc:
        print(f"flowship {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"flowship {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_NOT_AGREED
    except FlowshipError as exc:
        print(f"flowship {args.command}: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)


def _flag(args: argparse.Namespace) -> int:
    from flowship import _cli_flags

    return _cli_flags.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
