"""``flowship flag set|show|history``: a job's feature-flag rules on its control topic."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from flowship.deploy.exits import EXIT_OK

DESCRIPTION = """\
Feature flags and output routing, decided per input record by its offset.

  flowship flag set JOB FLAG RULE...   put RULEs in force for FLAG at an agreed cut
  flowship flag show JOB               rules in force, cuts, pending changes, instances
  flowship flag history JOB            every change, its cut and decision

RULE is MATCH:VARIANT, first match wins: all:on, partitions=1,4:on, percent=30:on,
field.tenant=a,b:on, env=prod:on, version=2:on; then optionally default:VARIANT.
'none' alone clears the flag's rules (its declared default everywhere). The built-in flag
flowship.route (variants production, side) sends records' outputs to the sinks' side topics.

`set` returns when every running instance of the job (each source subtask of each running
version) has acknowledged the rule before reaching the cut, and prints the cut; otherwise the
rule is in force nowhere (exit 9).
"""


def add_parser(sub: Any, epilog: str) -> None:
    """Add ``flag`` and its subcommands to the ``flowship`` parser."""
    parser = sub.add_parser(
        "flag",
        help="feature flags and output routing: set, show, history",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("job", metavar="JOB", help="the job's name (fs.Job(name, ...))")
    common.add_argument(
        "--kafka-bootstrap",
        default=None,
        help="Kafka bootstrap.servers (env FLOWSHIP_KAFKA_BOOTSTRAP; default 127.0.0.1:9092)",
    )
    common.add_argument(
        "--control-topic", default=None, help="the job's control topic (default: JOB.control)"
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    cmd = verbs.add_parser(
        "set", parents=[common], help="put rules in force for a flag at an agreed cut"
    )
    cmd.add_argument("flag", metavar="FLAG", help="the flag key (or flowship.route)")
    cmd.add_argument("rules", metavar="RULE", nargs="+", help="MATCH:VARIANT ... or 'none'")
    cmd.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds every running instance gets to acknowledge (default 30)",
    )
    verbs.add_parser("show", parents=[common], help="rules in force, cuts, instances")
    verbs.add_parser("history", parents=[common], help="every change, its cut and decision")


def _cuts(cuts: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{topic} " + " ".join(f"{p}@{o}" for p, o in parts.items())
        for topic, parts in cuts.items()
    )


def run(args: argparse.Namespace) -> int:
    """Run ``flowship flag VERB``; errors propagate to the command's handler."""
    from flowship.control import FlagClient

    bootstrap = args.kafka_bootstrap or os.environ.get("FLOWSHIP_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    with FlagClient(bootstrap, args.job, topic=args.control_topic) as client:
        if args.verb == "set":
            change = client.set_flag(args.flag, args.rules, timeout_s=args.timeout)
            out: dict[str, Any] = change.describe()
            if args.json:
                print(json.dumps(out, indent=2))
            else:
                print(
                    f"{args.flag}: {out['rules']} in force from {_cuts(out['cuts'])} "
                    f"(change {out['id']}, acknowledged by {len(change.instances)} "
                    f"instance(s) in {change.seconds:.2f} s)"
                )
            return EXIT_OK
        if args.verb == "show":
            shown: dict[str, Any] = client.show()
            if args.json:
                print(json.dumps(shown, indent=2))
                return EXIT_OK
            print(f"job {shown['job']} (control topic {shown['control_topic']})")
            for key, entry in shown["flags"].items():
                since = f" from {_cuts(entry['since'])}" if entry["since"] else ""
                print(
                    f"  {key}: {entry['rules']}{since} (default "
                    f"{entry['declared']['default']}; versions {', '.join(entry['versions'])})"
                )
            for pending in shown["pending"]:
                print(f"  pending: {pending['flag']} {pending['rules']} (change {pending['id']})")
            print(f"  {len(shown['instances'])} running instance(s)")
            for instance in shown["instances"]:
                print(f"    {instance['id']} on {instance['host']}")
            return EXIT_OK
        entries = client.history()
        if args.json:
            print(json.dumps(entries, indent=2))
            return EXIT_OK
        for entry in entries:
            reason = f" ({entry['reason']})" if entry["reason"] else ""
            print(
                f"{entry['id']} {entry['flag']}: {entry['rules']} -> "
                f"{entry['decision']}{reason}; cut {_cuts(entry['cuts'])}"
            )
        return EXIT_OK
