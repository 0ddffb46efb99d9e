"""A deployer reduced to its ledger calls, run as a process of its own by test_kafka_ledger.py.

    python deployer.py race   LEDGER JOB START_AT      take the lease at START_AT, record, give back
    python deployer.py hold   LEDGER JOB TTL TOUCHED   take the lease, record PLANNED, wait for a
                                                       line on stdin, then record the next step and
                                                       touch the job (the file TOUCHED)
    python deployer.py take   LEDGER JOB               take the lease, record, wait for a line

The host identity comes from FLOWSHIP_HOST_ID. Each prints JSON lines on stdout and exits with
flowship's exit code for the error that stopped it (7 for a held or lost lease).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from flowship._log import configure_for_cli
from flowship.deploy.exits import exit_code_for
from flowship.deploy.ledger import Entry, LeaseRenewer
from flowship.deploy.ledgers import open_ledger
from flowship.deploy.machine import Step
from flowship.errors import FlowshipError


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


def main(mode: str, where: str, job: str, *rest: str) -> int:
    configure_for_cli()  # log events to stderr: stdout holds this script's JSON lines
    ttl = float(rest[0]) if mode == "hold" else 600.0
    ledger = open_ledger(where, Path("."), lease_ttl=ttl)
    deployment = ledger.new_deployment_id()
    try:
        if mode == "race":
            time.sleep(max(0.0, float(rest[0]) - time.time()))
            with ledger.holding(job):
                for step in (Step.PLANNED, Step.SUBMITTED, Step.RUNNING):
                    ledger.record(job, deployment, step, host=ledger.host)
            say(event="deployed", deployment=deployment)
            return 0
        with LeaseRenewer(ledger, job):
            lease = ledger.acquire(job)
            ledger.record(job, deployment, Step.PLANNED, host=ledger.host)
            say(event="holding", deployment=deployment, holder=lease.holder)
            sys.stdin.readline()
            if mode == "take":
                ledger.release(lease)
                return 0
            try:
                ledger.record(job, deployment, Step.CHECKED, host=ledger.host)
            except FlowshipError as exc:
                say(event="record_refused", error=type(exc).__name__, message=str(exc))
                # the lease's own checks aside: the store itself refuses this deployer's line
                try:
                    ledger._append(Entry(job, deployment, Step.CHECKED, time.time(), {}))
                    say(event="append_accepted")
                except FlowshipError as raw:
                    say(event="append_refused", error=type(raw).__name__, message=str(raw))
                raise
            Path(rest[1]).write_text("touched")  # acts on the job only with the lease
            say(event="touched")
            ledger.release(lease)
            return 0
    except FlowshipError as exc:
        say(event="stopped", error=type(exc).__name__, message=str(exc))
        return exit_code_for(exc)
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
