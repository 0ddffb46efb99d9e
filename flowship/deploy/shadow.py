"""Dark launches (``python job_v2.py --shadow``): a version beside the current one, output aside.

A shadow is a second version of a job started from a savepoint of the running one, taken
**without stopping it**. It reads the same input from the same offsets on, with consumer groups,
transactional ids and sink uids of its own (``.shadow``), and writes every output, dead letters
included, to its version's side topics (``<topic>.side.<version>``): production's topics, groups
and transactions are never touched, whatever the shadow does. Because every output names its
input record (``flowship.source``), the shadow's outputs pair up with production's record by
record: :func:`diff_shadow` (``flowship diff JOB``) compares them.

The ledger records a job's shadows under a key of their own, ``<job>.shadow``
(:func:`shadow_key`), with the steps every deployment has (PLANNED, SUBMITTED, RUNNING) and
RETIRED once stopped (:func:`abort_shadow`, ``flowship abort JOB``). Kept apart, an upgrade or a
rollback of the job never mistakes a shadow for the running version, and a shadow's deployer
takes the shadow key's lease, not the job's: starting or stopping a shadow never blocks a
deployment of the job, nor the other way round.

This module imports no PyFlink: the start is ``flowship.job``'s (it builds the graph).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowship._log import get_logger
from flowship.deploy.alive import cancel_confirmed, deployment_liveness
from flowship.deploy.diff import (
    DiffPolicy,
    OutputDiff,
    Tolerance,
    Verdict,
    compare,
    decoder,
    input_ranges,
    judge,
    read_outputs,
    read_topics,
    split_address,
)
from flowship.deploy.ledger import Ledger, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.side_by_side import (
    describe_serve,
    ended,
    goodbye,
    hand_back,
    serves,
    shadow_key,
)
from flowship.deploy.upgrade import settle_submitted
from flowship.errors import ClusterError, ConfigError
from flowship.kafka._declare import side_topic

log = get_logger("flowship.shadow")


def offsets_json(offsets: Mapping[tuple[str, int], int]) -> dict[str, dict[str, int]]:
    """{(topic, partition): offset} as the ledger keeps it: {topic: {"partition": offset}}."""
    out: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        out.setdefault(topic, {})[str(partition)] = int(offset)
    return out


def topic_offsets(recorded: Mapping[str, Any], topic: str) -> dict[int, int]:
    """One topic's {partition: offset} from :func:`offsets_json`'s form (empty if absent)."""
    return {int(p): int(o) for p, o in (recorded.get(topic) or {}).items()}


def last_shadow(ledger: Ledger, job: str) -> tuple[str, dict[str, Any]] | None:
    """The newest shadow of ``job`` that reached RUNNING (retired or not), with its data."""
    for deployment, entries in reversed(ledger.deployments(shadow_key(job)).items()):
        if any(e.step is Step.RUNNING for e in entries):
            data = merged(entries)
            data["step"] = entries[-1].step.value
            return deployment, data
    return None


def shadow_status(ledger: Ledger, job: str) -> dict[str, Any] | None:
    """What ``flowship status`` says about ``job``'s newest shadow (None: it never had one)."""
    deployments = ledger.deployments(shadow_key(job))
    if not deployments:
        return None
    deployment, entries = list(deployments.items())[-1]
    data = merged(entries)
    return {
        "deployment": deployment,
        "version": data.get("version"),
        "step": entries[-1].step.value,
        "job_id": data.get("job_id"),
        "rest_url": data.get("rest_url"),
        "shadow_of": data.get("shadow_of"),
        "kind": data.get("kind"),
        "serve": describe_serve(serves(data)),
    }


# the diff -----------------------------------------------------------------------------------


@dataclass
class ShadowDiff:
    """``flowship diff JOB``: each sink's shadow outputs against production's."""

    job: str
    deployment: str
    version: str
    running_version: str
    sinks: list[OutputDiff] = field(default_factory=list)
    tolerance: Tolerance | None = None
    #: the policy's verdict, when one was asked for
    verdict: Verdict | None = None
    #: per side topic: the input addresses of the shadow's outputs compared (for the chart)
    compared: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def different(self) -> int:
        """Inputs whose outputs differ, over every sink."""
        return sum(d.different + d.only_production + d.only_candidate for d in self.sinks)

    def to_json(self) -> dict[str, Any]:
        """JSON form (``--json``)."""
        return {
            "job": self.job,
            "deployment": self.deployment,
            "version": self.version,
            "running_version": self.running_version,
            "different": self.different,
            "sinks": [d.to_json() for d in self.sinks],
            "tolerance": None if self.tolerance is None else self.tolerance.describe(),
            "verdict": None if self.verdict is None else self.verdict.to_json(),
        }

    def __str__(self) -> str:
        lines = [
            f"{self.job}: shadow version {self.version} (deployment {self.deployment}) against "
            f"production version {self.running_version}"
        ]
        for d in self.sinks:
            lines.append(f"  {d.summary()}")
            lines.extend(f"    e.g. input {_example(e)}" for e in d.examples)
            if d.note:
                lines.append(f"    note: {d.note}")
        if self.verdict is not None:
            lines.append(f"verdict: {self.verdict.outcome}: {self.verdict.reason}")
        return "\n".join(lines)


def _example(example: Mapping[str, Any]) -> str:
    """One difference on one line: the differing fields' values, production -> shadow."""
    ours, theirs = example["production"], example["candidate"]
    if len(ours) == len(theirs) == 1 and all(
        isinstance(v[0].get("value"), dict) for v in (ours, theirs)
    ):
        a, b = ours[0]["value"], theirs[0]["value"]
        changes = [
            f"{name}: {a.get(name)!r} -> {b.get(name)!r}"
            for name in example["fields"]
            if name in a or name in b
        ]
        if len(changes) == len(example["fields"]):
            return f"{example['input']} (key {ours[0].get('key')!r}): " + ", ".join(changes)
    return f"{example['input']}: production {ours} shadow {theirs}"


def diff_shadow(
    ledger: Ledger,
    job: str,
    bootstrap: str | None = None,
    *,
    tolerance: Tolerance | None = None,
    policy: DiffPolicy | None = None,
) -> ShadowDiff:
    """Pair the newest shadow's outputs with production's by input address; compare them.

    Production's outputs are read from where its topics ended just before the shadow's
    savepoint (every output of an input the shadow reads comes after that), the shadow's side
    topics from where they ended before it started; both ``read_committed``, to their ends now.
    Both versions go on running, so one is usually ahead of the other: the shadow's outputs for
    inputs production has not written for yet (past production's highest input offset on that
    partition) are held back, not counted as "only in the shadow" (the note says how many).
    Production outputs past the shadow's range are never compared (see
    :mod:`flowship.deploy.diff`). ``bootstrap``: the Kafka the shadow was started against
    unless given. ``tolerance``: what counts as a difference (default: exact); ``policy``: when
    given, its verdict over every sink is added.
    """
    found = last_shadow(ledger, job)
    if found is None:
        msg = (
            f"no shadow of job {job!r} is recorded in the ledger ({ledger!r}); start one with "
            f"`python JOB.py --shadow` beside the running version"
        )
        raise ConfigError(msg)
    deployment, data = found
    bootstrap = bootstrap or str(data.get("kafka_bootstrap") or "127.0.0.1:9092")
    production = merged(ledger.deployments(job).get(str(data.get("shadow_of")), []))
    current = ledger.current(job)
    replaced = (
        ""
        if current is None or current[0] == data.get("shadow_of")
        else (
            f"production was redeployed since the shadow started (now deployment {current[0]}, "
            f"version {current[1].get('version')}): its outputs since then are that version's"
        )
    )
    before = {s["uid"]: s for s in production.get("manifest", {}).get("sinks", []) if "uid" in s}
    version = str(data.get("version"))
    result = ShadowDiff(
        job, deployment, version, str(production.get("version")), tolerance=tolerance
    )
    for sink in data.get("manifest", {}).get("sinks", []):
        side = side_topic(sink["topic"], version)
        side_from = topic_offsets(data.get("side_from", {}), side)
        previous = before.get(sink.get("uid"))
        if previous is None:
            theirs = read_outputs(bootstrap, side, side_from)
            diff = OutputDiff(sink["topic"], side, unaddressed_candidate=len(theirs))
            diff.note = f"sink {sink.get('uid')!r} is new in the shadow: nothing to compare with"
            result.sinks.append(diff)
            continue
        production_topic = str(previous["topic"])
        starts = {
            side: side_from,
            production_topic: topic_offsets(data.get("outputs_from", {}), production_topic),
        }
        # a canary: part of production is the shadow's, and the running version's outputs for
        # those inputs are on its own side topic
        canary = "change" in data
        old_side = side_topic(production_topic, result.running_version)
        if canary:
            starts[old_side] = topic_offsets(data.get("side_from", {}), old_side)
        read = read_topics(bootstrap, starts)
        ours, theirs = read[production_topic], read[side]
        if canary:
            mine = version.encode()
            theirs = theirs + [o for o in ours if o.version == mine]
            ours = [o for o in ours if o.version != mine] + read[old_side]
        kept, held = clip_to_production(ours, theirs)
        result.compared[side] = [o.address for o in kept if o.address is not None]
        diff = compare(
            ours,
            kept,
            decoder(previous["schema"]),
            decoder(sink["schema"]),
            production_name=previous["topic"],
            candidate_name=side,
            tolerance=tolerance,
        )
        notes = [replaced] if replaced else []
        if held:
            notes.append(
                f"{held} shadow outputs are for inputs production has not written for yet "
                "(it is behind the shadow there): not compared"
            )
        diff.note = "; ".join(notes)
        log.info("shadow.diff", job=job, sink=sink.get("uid"), summary=diff.summary())
        result.sinks.append(diff)
    if policy is not None:
        result.verdict = judge(result.sinks, policy)
        log.info("shadow.verdict", job=job, **result.verdict.to_json())
    return result


def clip_to_production(production: list[Any], shadow: list[Any]) -> tuple[list[Any], int]:
    """The shadow's outputs production has caught up with (per input partition); how many not.

    An output whose input offset is past the highest one production wrote for on that input
    partition (or whose partition production wrote nothing for) is held back: production may
    simply not have got there yet. Outputs without an address are kept (compare counts them).
    """
    reached = input_ranges(o.address for o in production if o.address)
    kept: list[Any] = []
    held = 0
    for out in shadow:
        if out.address is not None:
            where, offset = split_address(out.address)
            high = reached.get(where)
            if high is None or offset is None or offset > high[1]:
                held += 1
                continue
        kept.append(out)
    return kept, held


# abort --------------------------------------------------------------------------------------


def abort_shadow(ledger: Ledger, job: str, reason: str | None = None) -> dict[str, Any]:
    """Stop ``job``'s running shadow (with a savepoint, else cancelled); record RETIRED.

    ``reason``: why, recorded with RETIRED (a blue-green upgrade's version not healthy while
    dark); ``flowship abort`` gives none.

    Production is not touched: a shadow never wrote to it. Raises ConfigError when no shadow
    runs, ClusterError (recording nothing) when whether it runs cannot be told.
    """
    key = shadow_key(job)
    with ledger.holding(key):
        settle_submitted(ledger, key)  # a deployer that died mid-start: adopt or close it
        current = ledger.current(key)
        if current is None:
            msg = (
                f"no shadow of job {job!r} runs (ledger {ledger!r}); nothing to abort "
                f"(`flowship status {job}` shows the last one)"
            )
            raise ConfigError(msg)
        deployment, data = current
        rest_url, job_id = str(data.get("rest_url")), str(data.get("job_id"))
        alive = deployment_liveness(data, timeout=5.0)
        if alive.unknown:
            msg = (
                f"cannot tell whether the shadow of {job!r} (version {data.get('version')}, "
                f"Flink job {job_id} at {rest_url}) runs: {alive.seen}; nothing was changed; "
                "try again when its cluster answers"
            )
            raise ClusterError(msg)
        # a canary: production goes back to the running version first, and the canary is
        # stopped only once it committed every output it owed production below the cuts
        facts: dict[str, Any] = hand_back(ledger, key, deployment, data, alive=alive.alive)
        if alive.alive:
            local = bool(data.get("pid"))
            try:
                facts["savepoint"] = FlinkRest(rest_url).stop_with_savepoint(
                    job_id, str(data["stop_to"])
                )
                facts["ended"] = ended(rest_url, job_id, local)
            except (ClusterError, KeyError) as exc:
                log.warning("shadow.stop_failed", job=job, error=str(exc))
            if "ended" not in facts:  # not stopped, or not seen ending: cancel, confirmed
                facts["cancelled"] = cancel_confirmed(rest_url, job_id, local=local)
        else:
            facts["already_ended"] = alive.seen
        if reason is not None:
            facts["reason"] = reason
        ledger.record(key, deployment, Step.RETIRED, **facts)
        goodbye(data)
        log.info("shadow.retired", job=job, deployment=deployment, **facts)
        told = (
            "production is served by the running version again"
            if "handed_back" in facts
            else "production was not touched"
        )
        print(
            f"flowship: {job}: shadow version {data.get('version')} (deployment {deployment}) "
            f"stopped and retired; {told}",
            file=sys.stderr,
        )
        return {"deployment": deployment, "version": data.get("version"), **facts}
