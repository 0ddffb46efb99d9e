"""Canaries and promotion: which version serves production, moved at agreed cuts.

A version started beside the running one (``--shadow``, ``--canary``; see
:mod:`flowship.deploy.shadow`) reads every input partition, like the running version, and keeps
complete state; what it *serves* (writes to production rather than to its side topics) is a
routing rule on the job's control topic (:mod:`flowship.control._routing`). Serving more or
fewer partitions is one rule change, in force for both versions at one agreed cut per
partition: for every input record exactly one version's output reaches production.

* :func:`route` makes the side-by-side version serve exactly a set of partitions (``--canary
  0,3`` at start, ``flowship promote JOB --partitions 1``, ``flowship promote JOB`` for all).
* :func:`hand_back` (part of ``flowship abort``): the running version serves everything again;
  then waits until the side-by-side version committed its outputs up to the cuts, so that it
  can be stopped without losing an output it still owed production.

Order at a cut, per key: the version taking a partition over holds its first record at or past
the cut until the version handing it over has committed up to the cut (the control agent's
``wait_handover``), so production sees each key's outputs in input order across the cut.

Every change is recorded in the ledger under the shadow key, write-ahead: ROUTING (what it will
serve) before the rule is proposed, ROUTED (the change and its cuts) once it is in force. A
deployer that died in between is simply run again: a change is "make the rule be R", and a rule
already in force is not proposed twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowship._log import get_logger
from flowship.control._client import FlagClient
from flowship.control._flags import ROUTE_KEY
from flowship.control._routing import serving_config
from flowship.deploy.alive import cancel_confirmed, deployment_liveness, liveness
from flowship.deploy.ledger import Ledger, fault_point, merged
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.deploy.upgrade import settle_submitted
from flowship.errors import ClusterError, ConfigError, FlowshipError

log = get_logger("flowship.side_by_side")

#: The ledger key of a job's versions beside the running one: ``<job>`` + this.
KEY_SUFFIX = ".shadow"


def shadow_key(job: str) -> str:
    """The ledger key under which ``job``'s shadows and canaries are recorded."""
    return job + KEY_SUFFIX


#: The lane other than the default: what a version beside the running one appends to consumer
#: groups, transactional id prefixes and sink uids when the running one has none.
SHADOW_LANE = ".shadow"


def lane_of(ledger: Ledger, job: str) -> str:
    """The lane of ``job``'s newest deployment that was started (reached SUBMITTED).

    Two versions side by side never share consumer groups, transactional ids or sink state: the
    one started beside the other takes the other lane. When it is promoted and the old version
    retired (``flowship retire``), it is the job's deployment and keeps its lane; an upgrade,
    a rollback or a dry run continues from its state, so it runs in that lane too.
    """
    for entries in reversed(list(ledger.deployments(job).values())):
        if any(e.step is Step.SUBMITTED for e in entries):
            return str(merged(entries).get("lane", ""))
    return ""


def other_lane(lane: str) -> str:
    """The lane of a version started beside one running in ``lane``."""
    return "" if lane else SHADOW_LANE


#: Testing hook (see :func:`~flowship.deploy.ledger.fault_point`): the moment a routing change
#: is in force on the control topic, before ROUTED is recorded.
ROUTE_IN_FORCE = "ROUTE_IN_FORCE"
#: Seconds to wait for the handing-over version to commit up to the cuts before giving up.
HANDED_OVER_TIMEOUT_S = 180.0


def serves(data: Mapping[str, Any]) -> list[int] | None:
    """The partitions a side-by-side deployment serves per its ledger data (None: all)."""
    served = data.get("serve", [])
    if served == "all":
        return None
    return sorted(int(p) for p in served)


def parse_partitions(text: str, option: str) -> list[int]:
    """``"0,3"`` -> ``[0, 3]`` (ConfigError naming ``option`` for anything else)."""
    try:
        parts = sorted({int(p) for p in text.split(",")})
    except ValueError:
        parts = []
    if not parts or any(p < 0 for p in parts):
        msg = f"{option} {text!r}: give input partitions as numbers, e.g. {option} 0,3"
        raise ConfigError(msg)
    return parts


def check_partitions(
    job: str, partitions: Sequence[int], inputs: Mapping[str, Sequence[int]], outcome: str
) -> None:
    """ConfigError unless each of ``partitions`` exists on one of the job's input topics."""
    known = sorted({p for parts in inputs.values() for p in parts})
    unknown = sorted(set(partitions) - set(known))
    if unknown:
        msg = (
            f"job {job!r} has no input partition {', '.join(map(str, unknown))} (input topics: "
            f"{', '.join(f'{t} with {len(p)}' for t, p in inputs.items())}); {outcome}"
        )
        raise ConfigError(msg)


def describe_serve(serve: Sequence[int] | None) -> str:
    """``all``, ``none`` or ``0,3``."""
    if serve is None:
        return "all"
    return ",".join(str(p) for p in sorted(serve)) if serve else "none"


def _running_shadow(ledger: Ledger, job: str) -> tuple[str, dict[str, Any]]:
    key = shadow_key(job)
    settle_submitted(ledger, key)
    current = ledger.current(key)
    if current is None:
        msg = (
            f"no version of job {job!r} runs beside the current one (ledger {ledger!r}); start "
            f"one first: `python job_v2.py --canary 0,3` (or --shadow)"
        )
        raise ConfigError(msg)
    deployment, data = current
    if not data.get("control_topic") or not data.get("kafka_bootstrap"):
        msg = (
            f"job {job!r} has no control plane (fs.Job(..., control=False)): which version "
            "serves production is a rule on its control topic; turn the control plane on to "
            "run a canary"
        )
        raise ConfigError(msg)
    return deployment, data


def refuse_if_serving(ledger: Ledger, job: str, what: str) -> None:
    """ConfigError when a version beside the running one serves production partitions.

    An upgrade or a rollback replaces the running version only; with another version serving
    part of production, the replacement (routing by its own version's rules) would serve the
    same partitions again. ``what`` names the refused action for the message.
    """
    current = ledger.current(shadow_key(job))
    if current is None:
        return
    deployment, data = current
    serving = serves(data)
    if serving is not None and not serving and "handing_back" not in data:
        return  # a dark launch: it serves nothing
    if deployment_liveness(data, timeout=5.0).dead:
        return
    msg = (
        f"{what} of {job!r} refused: version {data.get('version')} runs beside the running "
        f"version and serves input partitions {describe_serve(serving)} in production "
        f"(deployment {deployment}); replacing the running version now could let two versions "
        f"serve one partition. Run `flowship abort {job}` first; nothing was changed"
    )
    raise ConfigError(msg)


def route(
    ledger: Ledger,
    job: str,
    serve: Sequence[int] | None,
    *,
    why: str,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Make ``job``'s side-by-side version serve exactly ``serve`` (None: every partition).

    Raises ConfigError (no such version, partitions that do not exist), ClusterError (it is
    not running, or whether it runs cannot be told), ControlError (the change was not agreed:
    in force nowhere). Nothing is changed when it raises before the proposal.
    """
    key = shadow_key(job)
    # the job's lease as well: no upgrade or rollback of the running version is under way, and
    # none starts, while the canary takes partitions over (they check under that lease too)
    with ledger.holding(job), ledger.holding(key):
        deployment, data = _running_shadow(ledger, job)
        running = ledger.current(job)
        if running is None or running[0] != data.get("shadow_of"):
            now = "none" if running is None else f"{running[0]} ({running[1].get('version')})"
            msg = (
                f"version {data.get('version')} of {job!r} was started beside deployment "
                f"{data.get('shadow_of')}, which is no longer the job's current deployment "
                f"(now: {now}); nothing was changed. Stop it with `flowship abort {job}`"
            )
            raise ConfigError(msg)
        alive = deployment_liveness(data, timeout=5.0)
        if not alive.alive:
            msg = (
                f"the version of {job!r} beside the current one (version {data.get('version')}, "
                f"deployment {deployment}) is not running ({alive.seen}); nothing was changed. "
                f"`flowship abort {job}` gives everything back to the running version"
            )
            raise ClusterError(msg)
        return _route(ledger, key, deployment, data, serve, why=why, timeout_s=timeout_s)


def promote(
    ledger: Ledger, job: str, partitions: Sequence[int] | None = None, *, timeout_s: float = 30.0
) -> dict[str, Any]:
    """``flowship promote JOB [--partitions 1,2]``: the new version serves these too (or all)."""
    if partitions is None:
        return route(ledger, job, None, why="promote", timeout_s=timeout_s)
    current = ledger.current(shadow_key(job))
    now = serves(current[1]) if current is not None else []
    if now is None:
        serve: list[int] | None = None
    else:
        serve = sorted(set(now) | {int(p) for p in partitions})
    return route(ledger, job, serve, why="promote", timeout_s=timeout_s)


def demote(ledger: Ledger, job: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
    """``flowship demote JOB``: the running version serves every partition again (flip back).

    Unlike ``flowship abort`` the version beside it keeps running, dark: ``flowship promote``
    flips to it again. Blue-green keeps it so until ``flowship retire``.
    """
    return route(ledger, job, [], why="demote", timeout_s=timeout_s)


def _route(
    ledger: Ledger,
    key: str,
    deployment: str,
    data: Mapping[str, Any],
    serve: Sequence[int] | None,
    *,
    why: str,
    timeout_s: float,
    extra: Mapping[str, Any] | None = None,
    wait_previous: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    job = key[: -len(KEY_SUFFIX)]
    new, old = str(data["version"]), str(data["running_version"])
    with _client(job, data) as client:
        inputs = client.source_partitions(new) or client.source_partitions(old)
        known = sorted({p for parts in inputs.values() for p in parts})
        if serve is not None:
            check_partitions(job, serve, inputs, "nothing was changed")
            if set(serve) >= set(known):
                serve = None  # every partition: the shorter rule, and it covers new ones
        text = describe_serve(serve)
        config = serving_config(new, old, serve)
        if wait_previous:
            history = [
                e.data for e in ledger.deployments(key).get(deployment, []) if e.step is Step.ROUTED
            ]
            _wait_previous(job, data, history, known)
        ledger.record(
            key, deployment, Step.ROUTING, serve=_serve_json(serve), why=why, **(extra or {})
        )
        log.info("route.proposing", job=job, version=new, serve=text, rules=config.text())
        in_force = client.in_force(ROUTE_KEY)
        if in_force is not None and in_force.config == config and not force:
            change, cuts = in_force.id, in_force.cuts  # a rerun after the change was agreed
        elif in_force is None and not config.rules and config.default is None and not force:
            change, cuts = "", {}
        else:
            done = client.set_flag(ROUTE_KEY, config, timeout_s=timeout_s)
            change, cuts = done.proposal.id, done.proposal.cuts
            fault_point(ROUTE_IN_FORCE)
        cut_json = {t: {str(p): o for p, o in sorted(c.items())} for t, c in cuts.items()}
        ledger.record(
            key,
            deployment,
            Step.ROUTED,
            serve=_serve_json(serve),
            change=change,
            cuts=cut_json,
            rules=config.text(),
        )
        log.info("route.in_force", job=job, version=new, serve=text, change=change)
        print(
            f"flowship: {job}: version {new} serves partitions {text} in production, version "
            f"{old} the others (change {change or '-'}, cuts {cut_json})",
            file=sys.stderr,
        )
        return {
            "deployment": deployment,
            "version": new,
            "running_version": old,
            "serve": _serve_json(serve),
            "change": change,
            "cuts": cut_json,
        }


def hand_back(
    ledger: Ledger, key: str, deployment: str, data: Mapping[str, Any], *, alive: bool
) -> dict[str, Any]:
    """Give every partition back to the running version; wait for the hand-over when ``alive``.

    Called by ``flowship abort`` with the shadow key's lease held, before the side-by-side
    version is stopped. Returns what the ledger records about it (empty for a dark launch,
    which never served anything). A rerun after a deployer died half-way finds what was being
    handed back in the ledger (``handing_back``) and waits for it again.
    """
    job = key[: -len(KEY_SUFFIX)]
    served = serves(data)
    was = serves({"serve": data["handing_back"]}) if "handing_back" in data else served
    if was is not None and not was:
        return {}  # it never served anything: nothing to hand back
    handing_back = {"handing_back": _serve_json(was)}
    if served is None or served:
        done = _route(
            ledger,
            key,
            deployment,
            data,
            [],
            why="abort",
            timeout_s=30.0,
            extra=handing_back,
            # a canary that is gone commits nothing more: hand back at once
            wait_previous=alive,
        )
        change, cuts = done["change"], done["cuts"]
    else:
        change, cuts = str(data.get("change", "")), dict(data.get("cuts") or {})
    facts: dict[str, Any] = {"handed_back": change}
    if alive:
        try:
            facts["handed_over"] = _wait_handed_over(job, data, was, cuts, idle="raise")
        except _IdleCut:
            done = _recut(ledger, key, deployment, data, [], extra=handing_back)
            facts["handed_back"] = done["change"]
            facts["handed_over"] = _wait_handed_over(job, data, was, done["cuts"])
    else:
        # it did not run up to the cuts: the outputs of its partitions between its last
        # checkpoint and the cuts went to the running version's side topics only
        facts["gap_from"] = _committed_of(job, data, was)
        facts["gap_to"] = cuts
        log.warning("route.gap", job=job, version=data.get("version"), **facts)
    return facts


def _recut(
    ledger: Ledger,
    key: str,
    deployment: str,
    data: Mapping[str, Any],
    serve: list[int] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Agree the same rules again, cut at the idle end: the input stopped below the cuts.

    After :class:`_IdleCut`; ``force``: proposed even though they are the rules in force.
    """
    return _route(
        ledger, key, deployment, data, serve, why="re-cut", timeout_s=30.0, extra=extra, force=True
    )


def _groups(client: FlagClient, version: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for source in client.read().versions.get(version, {}).get("sources", []):
        out.setdefault(str(source["topic"]), []).append(str(source["group"]))
    return out


def _client(job: str, data: Mapping[str, Any]) -> FlagClient:
    return FlagClient(str(data["kafka_bootstrap"]), job, topic=str(data["control_topic"]))


def _committed_of(
    job: str, data: Mapping[str, Any], served: list[int] | None
) -> dict[str, dict[str, int]]:
    version = str(data["version"])
    with _client(job, data) as c:
        out: dict[str, dict[str, int]] = {}
        for topic, groups in _groups(c, version).items():
            parts = served if served is not None else c.source_partitions(version).get(topic, [])
            got = c.committed(groups, topic, parts)
            out[topic] = {str(p): o for p, o in sorted(got.items())}
        return out


def _wait_handed_over(
    job: str,
    data: Mapping[str, Any],
    served: list[int] | None,
    cuts: Mapping[str, Mapping[str, int]],
    idle: str = "wait",
) -> dict[str, dict[str, int]]:
    """Wait until the side-by-side version's groups committed up to ``cuts`` where it served."""
    version = str(data["version"])
    return _wait_committed(
        job,
        data,
        version,
        served,
        cuts,
        lambda behind: (
            f"version {version} of {job!r} has not committed up to the cuts it handed back "
            f"after {HANDED_OVER_TIMEOUT_S:g} s (topic: partition: (committed, cut)): {behind}; "
            "it was not stopped: stopping it now could lose outputs it still owes production. "
            "Check its checkpoints, then run `flowship abort` again"
        ),
        idle,
    )


class _IdleCut(Exception):
    """The handing-over version committed up to the input's end, which stopped below the cut."""


#: Consecutive polls (0.5 s apart) that must see the input idle below a cut before it counts.
IDLE_POLLS = 4


def _wait_committed(
    job: str,
    data: Mapping[str, Any],
    version: str,
    partitions: Sequence[int] | None,
    cuts: Mapping[str, Mapping[str, int]],
    failed: Callable[[dict[str, dict[int, tuple[int, int]]]], str],
    idle: str = "wait",
) -> dict[str, dict[str, int]]:
    """Wait until ``version``'s groups committed up to ``cuts`` on ``partitions`` (None: all).

    A cut agreed while input flowed lies a little ahead of the input's end; if the input stops
    below it, the version cannot get there. When it has committed up to the end of every
    partition it is behind on (and stays so for :data:`IDLE_POLLS` polls), ``idle`` says what
    that means: ``"done"`` (nothing is held at the cut: no record at or past it exists),
    ``"raise"`` (:class:`_IdleCut`: the caller agrees the same rules again, with cuts at the
    idle end), ``"wait"`` (go on waiting). ClusterError with ``failed(behind)`` past
    :data:`HANDED_OVER_TIMEOUT_S`.
    """
    deadline = time.monotonic() + HANDED_OVER_TIMEOUT_S
    idle_polls = 0
    with _client(job, data) as c:
        groups = _groups(c, version)
        while True:
            behind: dict[str, dict[int, tuple[int, int]]] = {}
            reached: dict[str, dict[str, int]] = {}
            at_end = True
            for topic, of_topic in groups.items():
                want = {int(p): int(o) for p, o in cuts.get(topic, {}).items()}
                parts = sorted(want if partitions is None else set(partitions) & set(want))
                got = c.committed(of_topic, topic, parts)
                reached[topic] = {str(p): o for p, o in sorted(got.items())}
                late = {p: (got[p], want[p]) for p in parts if got[p] < want[p]}
                if late:
                    behind[topic] = late
                    ends = c.ends(topic, sorted(late))
                    at_end = at_end and all(got[p] >= ends[p] for p in late)
            if not behind:
                return reached
            idle_polls = idle_polls + 1 if at_end else 0
            if idle != "wait" and idle_polls >= IDLE_POLLS:
                log.info("route.idle_below_cut", job=job, version=version, behind=str(behind))
                if idle == "done":
                    return reached
                raise _IdleCut(str(behind))
            if time.monotonic() > deadline:
                raise ClusterError(failed(behind))
            time.sleep(0.5)


def _wait_previous(
    job: str, data: Mapping[str, Any], history: Sequence[Mapping[str, Any]], known: list[int]
) -> None:
    """Wait until the last routing change's hand-over completed, before the next one.

    The version taking a partition over holds its records at the cut until the one handing it
    over committed up to the cut, and holding blocks its checkpoints. Were a partition to
    change hands again before that, each version could wait for the other's checkpoint at two
    different cuts: so the next change waits here until the handing-over version of every
    partition the last change moved committed up to its cut.
    """
    if not history:
        return
    last = history[-1]
    now = set(known) if last["serve"] == "all" else set(last["serve"])
    before_raw = history[-2]["serve"] if len(history) > 1 else []
    before = set(known) if before_raw == "all" else set(before_raw)
    cuts = last.get("cuts") or {}
    new, old = str(data["version"]), str(data["running_version"])
    for version, moved in ((old, now - before), (new, before - now)):
        if not moved:
            continue

        def failed(behind: dict[str, dict[int, tuple[int, int]]], v: str = version) -> str:
            return (
                f"the last routing change of {job!r} (change {last.get('change')}) has not been "
                f"handed over yet: version {v} has not committed up to its cuts after "
                f"{HANDED_OVER_TIMEOUT_S:g} s (topic: partition: (committed, cut)): {behind}; "
                "nothing was changed. Check that version's checkpoints and try again"
            )

        # an input that stopped below the cut holds nobody there: no record past it exists
        _wait_committed(job, data, version, sorted(moved), cuts, failed, idle="done")


def retire(ledger: Ledger, job: str, version: str) -> dict[str, Any]:
    """``flowship retire JOB VERSION``: the promoted version takes the job over.

    The running version is stopped once the one beside it serves every partition, and the
    promoted version becomes the job's deployment.

    Under the job's and the shadow key's leases: the last routing change must give every
    partition to the version beside it, and its hand-over be complete (the old version
    committed up to the cuts); then the old version is stopped with a savepoint (cancelled,
    confirmed, if that fails) and recorded RETIRED, the promoted version is recorded as a new
    deployment of the job (PLANNED, SUBMITTED, RUNNING, STABLE, with its Flink job, REST URL
    and lane: an upgrade continues from it), and its shadow deployment PROMOTED.
    """
    key = shadow_key(job)
    with ledger.holding(job), ledger.holding(key):
        deployment, data = _running_shadow(ledger, job)
        new, old = str(data["version"]), str(data["running_version"])
        if version == new:
            msg = (
                f"version {new} of {job!r} is the one beside the running version; to stop it "
                f"and give production back to version {old}, run `flowship abort {job}`"
            )
            raise ConfigError(msg)
        running = ledger.current(job)
        if version != old or running is None or running[0] != data.get("shadow_of"):
            msg = (
                f"version {version} of {job!r} is not the running version beside which version "
                f"{new} runs (that is version {old}, deployment {data.get('shadow_of')}); "
                "nothing was changed"
            )
            raise ConfigError(msg)
        history = [
            e.data for e in ledger.deployments(key).get(deployment, []) if e.step is Step.ROUTED
        ]
        last_step = ledger.last_step(key, deployment)
        if serves(data) is not None or last_step is not Step.ROUTED:
            msg = (
                f"version {old} of {job!r} still serves input partitions (version {new} serves "
                f"{describe_serve(serves(data))}); promote first: `flowship promote {job}`"
            )
            raise ConfigError(msg)
        if not deployment_liveness(data, timeout=5.0).alive:
            msg = (
                f"version {new} of {job!r} (deployment {deployment}) is not running: it cannot "
                f"take the job over; `flowship abort {job}` gives production back to {old}"
            )
            raise ClusterError(msg)
        cuts = history[-1].get("cuts") or {}

        def late(behind: dict[str, dict[int, tuple[int, int]]]) -> str:
            return (
                f"version {old} of {job!r} has not committed up to the cuts it handed over "
                f"after {HANDED_OVER_TIMEOUT_S:g} s (topic: partition: (committed, cut)): "
                f"{behind}; nothing was changed. Check its checkpoints and try again"
            )

        try:
            _wait_committed(job, data, old, None, cuts, late, idle="raise")
        except _IdleCut:
            done = _recut(ledger, key, deployment, data, None)
            _wait_committed(job, data, old, None, done["cuts"], late)
            history = [
                e.data for e in ledger.deployments(key).get(deployment, []) if e.step is Step.ROUTED
            ]
        previous, before = running
        alive = deployment_liveness(before, timeout=5.0)
        if alive.unknown:
            msg = (
                f"cannot tell whether version {old} of {job!r} runs ({alive.seen}); nothing "
                "was changed; try again when its cluster answers"
            )
            raise ClusterError(msg)
        facts: dict[str, Any] = {"retired_by": deployment}
        if alive.alive:
            rest_url, job_id = str(before["rest_url"]), str(before["job_id"])
            local = bool(before.get("pid"))
            target = str(data["stop_to"]).rstrip("/").rsplit("/", 1)[0] + "/retired"
            try:
                facts["savepoint"] = FlinkRest(rest_url).stop_with_savepoint(job_id, target)
                facts["ended"] = ended(rest_url, job_id, local)
            except (ClusterError, KeyError) as exc:
                log.warning("retire.stop_failed", job=job, version=old, error=str(exc))
            if "ended" not in facts:
                facts["cancelled"] = cancel_confirmed(rest_url, job_id, local=local)
        else:
            facts["already_ended"] = alive.seen
        ledger.record(job, previous, Step.RETIRED, **facts)
        goodbye({**data, "version": old})
        taken = ledger.new_deployment_id()
        carried = {
            k: data[k]
            for k in ("manifest", "script", "code_archive", "restored_from", "lane")
            if k in data
        }
        where = {k: data[k] for k in ("job_id", "rest_url", "pid", "lane") if k in data}
        ledger.record(
            job,
            taken,
            Step.PLANNED,
            version=new,
            kind="promoted",
            promoted_from=deployment,
            # not "previous": that names the version an upgrade stopped (a rollback's target)
            replaced=previous,
            **carried,
        )
        ledger.record(job, taken, Step.SUBMITTED, **where)
        ledger.record(job, taken, Step.RUNNING, **where)
        ledger.record(job, taken, Step.STABLE, serves="all", since=history[-1].get("cuts"))
        ledger.record(key, deployment, Step.PROMOTED, became=taken)
        log.info("retire.done", job=job, retired=old, version=new, deployment=taken)
        print(
            f"flowship: {job}: version {old} stopped and retired; version {new} is the job's "
            f"deployment now ({taken})",
            file=sys.stderr,
        )
        return {"retired": previous, "version": new, "deployment": taken, **facts}


def _serve_json(serve: Sequence[int] | None) -> list[int] | str:
    return "all" if serve is None else sorted(int(p) for p in serve)


#: Seconds a shadow stopped with a savepoint gets to be reported ended before it is cancelled.
STOP_END_TIMEOUT = 60.0


def ended(rest_url: str, job_id: str, local: bool) -> str:
    """Wait until Flink reports ``job_id`` ended (the savepoint is done before the job is)."""
    deadline = time.monotonic() + STOP_END_TIMEOUT
    while True:
        alive = liveness(rest_url, job_id, local=local, timeout=5.0)
        if alive.dead:
            return alive.seen
        if time.monotonic() > deadline:
            msg = f"Flink job {job_id} was stopped with a savepoint but still {alive.seen}"
            raise ClusterError(msg)
        time.sleep(0.5)


def goodbye(data: Mapping[str, Any]) -> None:
    """Say goodbye on the control topic for a stopped version's instances (best effort).

    ``data``: its deployment's (``control_topic``, ``kafka_bootstrap``, ``version``). A
    version stopped with a savepoint does not always get to say it itself; a flag setter would
    wait for its silent instances until their beats aged out. Other versions' stay.
    """
    topic, bootstrap = data.get("control_topic"), data.get("kafka_bootstrap")
    if not topic or not bootstrap:
        return
    from flowship.control import retire_instances

    try:
        gone = retire_instances(str(bootstrap), str(topic), str(data.get("version")))
    except FlowshipError as exc:
        log.warning("shadow.goodbye_failed", topic=topic, error=str(exc))
        return
    log.info("shadow.goodbye", topic=topic, instances=len(gone))
