"""``python job_v2.py --shadow``: start this version as a dark launch beside the running one.

The order, each step before the next (see :mod:`flowship.deploy.shadow` for what a shadow is):

1. the ledger's current deployment of the job runs, is another version, and no other shadow of
   the job runs; Kafka answers; the shadow's side topics exist;
2. the gate: this code must be able to read the running version's state (as for an upgrade);
   refused (exit 5) with nothing changed otherwise;
3. production's output end offsets and the side topics' are noted, then a savepoint of the
   running version is taken **without stopping it** (every production output of an input the
   shadow reads comes after those end offsets);
4. the deployment engine starts this version from that savepoint under the ledger key
   ``<job>.shadow`` (PLANNED, SUBMITTED, RUNNING, hand-over checkpoints). On the local target
   this process then runs the shadow's mini-cluster, on a REST port of its own, until
   ``flowship abort JOB`` stops it.

A deployer that dies between the savepoint and PLANNED leaves an unused savepoint behind and
nothing else; the rerun takes a new one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from flowship._log import get_logger
from flowship._ports import free_port
from flowship.deploy.alive import deployment_liveness
from flowship.deploy.check import check_upgrade
from flowship.deploy.engine import Engine, Policy, Release
from flowship.deploy.exits import EXIT_OK, EXIT_REFUSED, exit_code_for
from flowship.deploy.rehearse import end_offsets
from flowship.deploy.rest import FlinkRest
from flowship.deploy.savepoints import as_uri, child, storage_uri
from flowship.deploy.shadow import offsets_json, shadow_key
from flowship.deploy.side_by_side import lane_of, other_lane
from flowship.deploy.upgrade import running_manifest
from flowship.errors import ClusterError, ConfigError, FlowshipError
from flowship.kafka._declare import side_topic

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

log = get_logger("flowship.shadow")


def run_shadow(
    job: Job,
    settings: Settings,
    argv: list[str],
    canary: list[int] | None = None,
    *,
    kind: str | None = None,
    then: Callable[[], int] | None = None,
) -> int:
    """Gate, savepoint without a stop, start this version dark; the exit code.

    With ``canary`` (``--canary 0,3``), once it runs it serves those input partitions in
    production (:func:`flowship.deploy.side_by_side.route`). ``kind``: what the ledger records
    (default ``shadow`` or ``canary``); ``then``: run once it runs (the lease given back), its
    exit code is the run's (a blue-green upgrade's watch, promotion and retirement; on the local
    target the new version runs on in this process afterwards).
    """
    from flowship.job._local import LocalTarget
    from flowship.job._remote import ClusterTarget

    ledger = settings.open_ledger()
    current = ledger.current(job.name)
    if current is None:
        msg = (
            f"unknown job {job.name!r}: the ledger ({ledger!r}) records no running deployment "
            "of it, so there is nothing to run a shadow beside; deploy it first (without "
            "--shadow)"
        )
        raise ConfigError(msg)
    running, old = current
    if str(old.get("version")) == job.version:
        msg = (
            f"version {job.version} of {job.name!r} is the running version (deployment "
            f"{running}); a shadow runs another version beside it: change the version in "
            "fs.Job(..., version=...)"
        )
        raise ConfigError(msg)
    key = shadow_key(job.name)
    other = ledger.current(key)
    if other is not None:
        alive = deployment_liveness(other[1], timeout=3.0)
        if not alive.dead:
            msg = (
                f"a shadow of {job.name!r} runs already (version {other[1].get('version')}, "
                f"deployment {other[0]}, {alive.seen}); one shadow at a time: stop it with "
                f"`flowship abort {job.name}` first"
            )
            raise ConfigError(msg)
    alive = deployment_liveness(old)
    if not alive.alive:
        msg = (
            f"the running version of {job.name!r} (Flink job {old.get('job_id')} at "
            f"{old.get('rest_url')}) is not running ({alive.seen}): no savepoint of it can be "
            "taken for a shadow; bring it back first (see `flowship status`)"
        )
        raise ClusterError(msg)
    job.check_kafka(settings)
    # consumer groups, transactional ids and sink uids of its own: the other lane
    job.lane = other_lane(lane_of(ledger, job.name))
    if canary is not None:
        _check_canary(job, settings, canary)
    if job.control:
        _check_routing(job, settings, str(old.get("version")))
    if settings.is_local and _port(str(old.get("rest_url"))) == settings.rest_port:
        # the running version's mini-cluster holds this port: the shadow's gets one of its own
        settings = settings.model_copy(update={"rest_port": free_port()})
    target: LocalTarget | ClusterTarget = (
        LocalTarget(job, settings, shadow=True)
        if settings.is_local
        else ClusterTarget(job, settings, shadow=True)
    )
    manifest = job.manifest(settings.execution_mode, target.graph)
    gate = check_upgrade(running_manifest(old), manifest)
    if not gate.compatible:
        print(str(gate))
        print(
            f"flowship: shadow of {job.name} version {job.version} refused: it cannot read the "
            "running version's state; nothing was started (fix the problems above, see "
            "`flowship check`)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    target.prepare()  # the side topics, before their end offsets are noted
    production_topics = [s["topic"] for s in old["manifest"].get("sinks", [])]
    side_topics = [side_topic(s.topic, job.version) for s in job.sinks]
    outputs_from = end_offsets(settings.kafka_bootstrap, production_topics)
    # the running version's side topics too: a canary's running version writes there the
    # outputs of the partitions it no longer serves
    old_sides = [side_topic(t, str(old.get("version"))) for t in production_topics]
    side_from = end_offsets(settings.kafka_bootstrap, side_topics + old_sides)
    token = ledger.new_deployment_id()
    shadows = child(settings.storage(job.name), "shadows", token)
    savepoint = FlinkRest(str(old["rest_url"])).trigger_savepoint(
        str(old["job_id"]), child(shadows, "start")
    )
    log.info("shadow.savepoint", job=job.name, version=job.version, savepoint=savepoint)
    failed: list[FlowshipError] = []

    def serve_canary() -> None:
        # the shadow runs; its instances register when their sources open: then the cut
        if canary is None:
            return
        from flowship.control import FlagClient
        from flowship.deploy.side_by_side import route

        assert job.control_topic is not None  # _check_canary
        try:
            with FlagClient(settings.kafka_bootstrap, job.name, topic=job.control_topic) as c:
                c.wait_registered(job.version, timeout_s=180.0)
            route(settings.open_ledger(), job.name, canary, why="canary")
        except FlowshipError as exc:
            failed.append(exc)
            log.error("canary.not_serving", job=job.name, error=str(exc))
            print(
                f"flowship: {job.name} version {job.version} runs beside version "
                f"{old.get('version')} but serves nothing: {exc}. Try `flowship promote "
                f"{job.name} --partitions {','.join(map(str, canary))}`, or stop it with "
                f"`flowship abort {job.name}`",
                file=sys.stderr,
                flush=True,
            )

    followed: list[int] = []

    def after_start() -> None:
        serve_canary()
        if then is not None and not failed:  # a canary not serving is not judged
            try:
                followed.append(then())
            except FlowshipError as exc:
                log.error("shadow.then_failed", job=job.name, error=str(exc))
                print(f"flowship: {exc}", file=sys.stderr, flush=True)
                followed.append(exit_code_for(exc))

    engine = Engine(
        ledger,
        Release(key, job.version, manifest, str(job.script)),
        target,
        Policy(
            settings.state_dir,
            health_window_s=settings.health_window_s,
            bounded=False,
            argv=argv,
            state_storage=settings.state_storage,
        ),
        after_start=after_start,
    )
    served = (
        f"then it serves input partitions {','.join(map(str, canary))} in production, the "
        "rest of its outputs go"
        if canary is not None
        else "every output goes"
    )
    print(
        f"flowship: {job.name} version {job.version} starts as a "
        f"{'canary' if canary is not None else (f'{kind} deployment, dark,' if kind else 'shadow')}"
        f" beside version "
        f"{old.get('version')}: {served} to its side topics ({', '.join(side_topics)})",
        file=sys.stderr,
        flush=True,
    )
    try:
        code = engine.deploy(
            as_uri(savepoint),
            facts={
                "kind": kind or ("shadow" if canary is None else "canary"),
                **({"canary": canary} if canary is not None else {}),
                "shadow_of": running,
                "running_version": str(old.get("version")),
                "outputs_from": offsets_json(outputs_from),
                "side_from": offsets_json(side_from),
                "stop_to": storage_uri(child(shadows, "stop")),
                # for `flowship diff` and `flowship abort`: where the outputs and instances are
                "kafka_bootstrap": settings.kafka_bootstrap,
                "control_topic": job.control_topic if job.control else None,
            },
        )
    except FlowshipError:
        if followed and followed[0] != EXIT_OK:
            # a version judged not healthy, stopped by then: the verdict is the outcome
            return followed[0]
        raise
    if code == EXIT_OK and failed:
        return exit_code_for(failed[0])
    if code == EXIT_OK and followed:
        return followed[0]
    return code


def _input_partitions(job: Job, settings: Settings) -> dict[str, list[int]]:
    from flowship._kafka import admin_client

    admin = admin_client(settings.kafka_bootstrap)
    meta = admin.list_topics(timeout=10)
    return {
        s.topic: sorted(meta.topics[s.topic].partitions)
        for s in job.sources
        if s.topic in meta.topics
    }


def _check_canary(job: Job, settings: Settings, canary: list[int]) -> None:
    """ConfigError unless the job has a control plane and every partition exists."""
    if not job.control:
        msg = (
            f"--canary: job {job.name!r} has no control plane (fs.Job(..., control=False)); "
            "which version serves a partition is a rule on the control topic"
        )
        raise ConfigError(msg)
    from flowship.deploy.side_by_side import check_partitions

    where = f"--canary {','.join(map(str, canary))}"
    inputs = _input_partitions(job, settings)
    check_partitions(job.name, canary, inputs, f"{where}: nothing was started")


def _check_routing(job: Job, settings: Settings, running: str) -> None:
    """ConfigError when the routing rules in force would let both versions serve a partition."""
    from flowship.control import FlagClient
    from flowship.control._flags import ROUTE_KEY
    from flowship.control._routing import RunningVersion, check_routing
    from flowship.errors import FlagError

    assert job.control_topic is not None
    try:
        client = FlagClient(settings.kafka_bootstrap, job.name, topic=job.control_topic)
    except ConfigError:
        return  # no control topic yet: no rules
    with client:
        in_force = client.in_force(ROUTE_KEY)
        if in_force is None:
            return
        (old,) = client.versions_of([running])
        beside = RunningVersion(job.version, shadow=True, environment=settings.environment)
        try:
            check_routing(in_force.config, [old, beside], _input_partitions(job, settings))
        except FlagError as exc:
            msg = (
                f"{exc}. The routing rules in force ({in_force.config.text()}) do not leave "
                f"production to one version; nothing was started. Clear them first: "
                f"`flowship flag set {job.name} flowship.route none`"
            )
            raise ConfigError(msg) from None


def _port(url: str) -> int | None:
    return urlparse(url).port
