"""``python job_v2.py --upgrade-from savepoint --strategy blue-green``: an upgrade side by side.

The steps, each recorded in the ledger before the next (the shadow key ``<job>.shadow`` holds
the new version's deployment, the job's key the running one's):

1. **dark start**: this version starts beside the running one as ``--shadow`` does (gate,
   savepoint taken *without stopping* the running version, consumer groups and transactional
   ids of its own, every output to its side topics): PLANNED, SUBMITTED, RUNNING;
2. **dark health watch**: the health watch an in-place upgrade runs (window, checkpoints,
   failures, dead-letter rate and output ratio against the running version's), while production
   is still served by the running version. Not healthy: the new version is stopped and recorded
   RETIRED with the reason; the running version was never stopped and production never saw one
   of the new version's outputs (exit 6). Healthy: STABLE;
3. **promote**: at agreed cuts the new version serves every input partition (ROUTING, ROUTED);
   the version taking a partition over holds its first record at the cut until the running one
   committed up to it, so each input record's output reaches production exactly once, per key
   in input order;
4. **retire**: the old version is stopped with a savepoint once it committed every output below
   the cuts; the new version becomes the job's deployment (the old one RETIRED, the shadow
   PROMOTED).

``--strategy canary --canary 0,3`` is the same with a canary phase: once it runs, the new
version serves input partitions 0 and 3 in production (agreed cuts), and it is judged while it
does; judged bad, it gives them back (``flowship abort``: cuts again, then it stops).

A deployer that dies anywhere is simply run again with the same command: it finds the new
version's deployment in the ledger and carries on from its last step (a watch taken up again
counts the window from RUNNING, as an in-place upgrade's does). On the local target the new
version's mini-cluster runs in the deployer's process, so it dies with it: the rerun then starts
a new dark version, unless the dead one already served production (``flowship abort JOB`` gives
production back to the running version first; the error says so).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowship._log import get_logger
from flowship.deploy.alive import deployment_liveness
from flowship.deploy.diff import DiffPolicy, Verdict
from flowship.deploy.exits import (
    EXIT_DIFF_FAILED,
    EXIT_DIFF_UNDECIDED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
)
from flowship.deploy.health import Flow, baseline_flow, watch
from flowship.deploy.ledger import Ledger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.shadow import abort_shadow, diff_shadow, shadow_key
from flowship.deploy.side_by_side import describe_serve, retire, route, serves
from flowship.deploy.upgrade import AlreadyDeployed, settle_submitted
from flowship.errors import ConfigError

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

log = get_logger("flowship.blue_green")

#: The ``kind`` a blue-green deployment's shadow records (``--shadow``: shadow, ``--canary``:
#: canary): a rerun of the same command carries on with a deployment of this kind only.
KIND = "blue-green"
#: The same for ``--strategy canary --canary PARTITIONS``.
CANARY_KIND = "canary-upgrade"


#: Seconds between two diffs while the verdict is undecided (too few inputs compared yet).
VERDICT_POLL_S = 5.0


@dataclass(frozen=True)
class Verdicts:
    """How the new version is judged: while dark, or as a canary; its diff policy (or None)."""

    policy: DiffPolicy | None = None
    #: how long an undecided diff (too few inputs compared) is given before the version stops
    timeout_s: float = 300.0
    #: ``--strategy canary --canary 0,3``: judged while it serves these partitions (not dark)
    canary: list[int] | None = None


def run_blue_green(
    job: Job, settings: Settings, argv: list[str], verdicts: Verdicts | None = None
) -> int:
    """Dark start (or canary), health watch and verdict, promote, retire; the exit code."""
    from flowship.job._shadow import run_shadow

    verdicts = verdicts or Verdicts()
    kind = CANARY_KIND if verdicts.canary else KIND

    if not job.control:
        msg = (
            f"--strategy {'canary' if verdicts.canary else 'blue-green'}: job {job.name!r} has "
            "no control plane (fs.Job(..., control=False)); which version serves production is "
            "a rule on its control topic. Turn the control plane on, or upgrade in place "
            "(--strategy in-place)"
        )
        raise ConfigError(msg)
    ledger = settings.open_ledger()
    key = shadow_key(job.name)
    with ledger.holding(key):
        settle_submitted(ledger, key)  # a deployer that died mid-start: adopt or close it
    beside = ledger.current(key)
    if beside is not None and str(beside[1].get("version")) == job.version:
        deployment, data = beside
        alive = deployment_liveness(data, timeout=5.0)
        if data.get("kind") == kind and alive.alive:
            print(
                f"flowship: {job.name} {job.version} runs beside version "
                f"{data.get('running_version')} as {kind} deployment {deployment} (its "
                f"deployer stopped at {ledger.last_step(key, deployment)}); carrying on",
                file=sys.stderr,
                flush=True,
            )
            return carry_on(job, settings, ledger, deployment, verdicts, resumed=True)
        if serves(data) != [] and not alive.alive:
            msg = (
                f"version {job.version} of {job.name!r} (deployment {deployment}) served input "
                f"partitions {describe_serve(serves(data))} in production and is not running "
                f"({alive.seen}); run `flowship abort {job.name}` to give production back to "
                f"version {data.get('running_version')} first, then this command again"
            )
            raise ConfigError(msg)
    current = ledger.current(job.name)
    if current is not None and str(current[1].get("version")) == job.version:
        alive = deployment_liveness(current[1], timeout=5.0)
        if alive.alive:
            raise AlreadyDeployed(current[0], current[1])
        msg = (
            f"version {job.version} of {job.name!r} is the job's deployment ({current[0]}) but "
            f"is not running ({alive.seen}); bring it back with --upgrade-from "
            "latest-checkpoint (see `flowship status`)"
        )
        raise ConfigError(msg)

    def steps() -> int:
        found = ledger.current(key)
        assert found is not None  # the engine recorded RUNNING under this key
        return carry_on(job, settings, ledger, found[0], verdicts, resumed=False)

    return run_shadow(job, settings, argv, canary=verdicts.canary, kind=kind, then=steps)


def carry_on(
    job: Job,
    settings: Settings,
    ledger: Ledger,
    deployment: str,
    verdicts: Verdicts | None = None,
    *,
    resumed: bool,
) -> int:
    """From the new version's last recorded step to the end: judge, promote, retire.

    Judged by its health watch and, with a diff policy, by its outputs against the running
    version's. ``resumed``: a deployer run again carries on (the watch counts from RUNNING).
    """
    verdicts = verdicts or Verdicts()
    key = shadow_key(job.name)
    entries = ledger.deployments(key)[deployment]
    data = merged(entries)
    old = str(data["running_version"])
    canary = [int(p) for p in data.get("canary") or []]
    if canary and not any(e.step in (Step.ROUTED, Step.STABLE) for e in entries):
        # a deployer that died before its canary served: the canary phase first
        route(ledger, job.name, canary, why="canary")
    if not any(e.step is Step.STABLE for e in entries):
        running_at = next(e.at for e in entries if e.step is Step.RUNNING)
        healthy, facts = _watch(settings, ledger, job.name, data, running_at, resumed)
        facts["dark"] = not canary
        if canary:
            facts["canary"] = canary
        outcome = EXIT_OK
        if not healthy:
            outcome, why = EXIT_ROLLED_BACK, f"not healthy: {facts['reason']}"
        elif verdicts.policy is not None:
            verdict = _judge_outputs(job.name, settings, ledger, verdicts)
            facts["verdict"] = verdict.to_json()
            if verdict.outcome != "pass":
                why = f"diff verdict {verdict.outcome}: {verdict.reason}"
                outcome = EXIT_DIFF_FAILED if verdict.outcome == "fail" else EXIT_DIFF_UNDECIDED
        if outcome != EXIT_OK:
            # a canary gives its partitions back first (at agreed cuts), then stops
            abort_shadow(ledger, job.name, reason=f"{why} ({_phase(canary)})")
            seen = (
                f"production got its outputs for input partitions {describe_serve(canary)} "
                "between the cuts in the ledger (ROUTED), and from version "
                f"{old} again from the hand-back's cuts"
                if canary
                else "production never saw an output of the new version"
            )
            print(
                f"flowship: {job.name} {job.version} was judged {why} ({_phase(canary)}); it "
                f"was stopped; version {old} serves production as before and {seen}",
                file=sys.stderr,
                flush=True,
            )
            return outcome
        with ledger.holding(key):
            ledger.record(key, deployment, Step.STABLE, **facts)
        print(
            f"flowship: {job.name} {job.version} is judged good ({_phase(canary)}: "
            f"{facts['reason']}); promoting it",
            file=sys.stderr,
            flush=True,
        )
    if serves(merged(ledger.deployments(key)[deployment])) is not None:
        route(ledger, job.name, None, why=str(data.get("kind") or KIND))
    retire(ledger, job.name, old)
    return EXIT_OK


def _phase(canary: list[int]) -> str:
    if canary:
        return f"while it served input partitions {describe_serve(canary)} as a canary"
    return "while it ran dark"


def _watch(
    settings: Settings,
    ledger: Ledger,
    job: str,
    data: Mapping[str, Any],
    running_at: float,
    resumed: bool,
) -> tuple[bool, dict[str, Any]]:
    """The health watch of the new version: (healthy, what the ledger records about it).

    Dark, or serving a canary's partitions. ``resumed`` (a deployer run again after it died
    during the watch): the window counts from RUNNING, the rerun gets what was left of it, and
    every checkpoint completed meanwhile counts. The running version's flow so far is the
    baseline its output ratio and dead-letter rate are held to.
    """
    window = settings.health_window_s
    if resumed:
        window = max(window - max(time.time() - running_at, 0.0), 0.0)
    current = ledger.current(job)
    running = current[1] if current is not None else None
    baseline: Flow | None = None
    if running is not None and running.get("rest_url") and running.get("job_id"):
        baseline = baseline_flow(str(running["rest_url"]), str(running["job_id"]))
    health = watch(
        FlinkRest(str(data["rest_url"])),
        str(data["job_id"]),
        window,
        settings.health_checkpoints,
        count_from_start=resumed,
        baseline=baseline,
        thresholds=settings.health,
    )
    facts: dict[str, Any] = {
        "reason": health.reason,
        "checkpoints": health.checkpoints,
        "waited_s": round(health.waited_s, 1),
        **health.observed(),
        **({"resumed": True} if resumed else {}),
    }
    return health.stable, facts


def _judge_outputs(job: str, settings: Settings, ledger: Ledger, verdicts: Verdicts) -> Verdict:
    """The diff policy's verdict on the dark version's outputs; undecided ones are diffed again.

    Every :data:`VERDICT_POLL_S` while too few inputs were compared, until ``timeout_s``.
    """
    assert verdicts.policy is not None
    deadline = time.monotonic() + verdicts.timeout_s
    while True:
        result = diff_shadow(ledger, job, settings.kafka_bootstrap, policy=verdicts.policy)
        verdict = result.verdict
        assert verdict is not None  # a policy was given
        log.info(
            "blue_green.verdict",
            job=job,
            outcome=verdict.outcome,
            pairs=verdict.pairs,
            differing=verdict.differing,
        )
        if verdict.outcome != "undecided" or time.monotonic() + VERDICT_POLL_S > deadline:
            return verdict
        time.sleep(VERDICT_POLL_S)
