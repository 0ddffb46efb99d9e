"""``python job.py --dry-run --upgrade-from savepoint|latest-checkpoint|PATH``.

The parent process (:func:`dry_run`) runs the upgrade gate, gets state without stopping the
running version, reads every key of it with this code's codecs (:mod:`flowship.deploy.rehearse`)
and starts a child process of this same script with the hidden ``--flowship-rehearsal SUFFIX``
flag. The child (:func:`run_rehearsal`) restores this code from that state on an embedded
mini-cluster of its own (a free REST port, a temporary state dir), bounded at the latest offsets
when it starts, with every Kafka name suffixed; it prints one result line and exits.

Nothing production uses is changed: no ledger entry, no lease, the running job keeps running,
its consumer groups, topics and transactional ids are never used. The report is also kept as
``STATE_DIR/JOB/dry-runs/<token>/report.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowship._log import get_logger
from flowship._ports import free_port
from flowship._spawn import spawn_detached, without_flags
from flowship.deploy.alive import deployment_liveness
from flowship.deploy.check import check_upgrade
from flowship.deploy.diff import Output, compare, decoder, input_ranges, read_outputs
from flowship.deploy.exits import EXIT_DRY_RUN_FAILED, EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from flowship.deploy.rehearse import (
    DryRunReport,
    Rehearsal,
    committed_offsets,
    count_committed,
    create_twin_topics,
    end_offsets,
    format_report,
    new_token,
    read_state,
    rehearsal_name,
    rehearsal_suffix,
    sample_consumed,
    save_report,
)
from flowship.deploy.rest import FlinkRest
from flowship.deploy.savepoints import child, is_local, restore_path
from flowship.deploy.upgrade import restore_point, running_manifest
from flowship.errors import ClusterError, ConfigError, StateError
from flowship.job._graph import graph_of
from flowship.job._runtime import METRICS_FETCH_MS, flink_options, local_options, make_env
from flowship.schema import StateCodec
from flowship.state import registered

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

log = get_logger("flowship.dry_run")

#: The child prints its outcome on one line starting with this.
RESULT_PREFIX = "flowship-rehearsal-result "


def dry_run(
    job: Job, settings: Settings, argv: list[str], upgrade_from: str | None, as_json: bool
) -> int:
    """Gate, state, read every key, rehearse, report. Exit 0, 5 (refused) or 8 (failed)."""
    mode = upgrade_from or "savepoint"
    ledger = settings.open_ledger()
    current = ledger.current(job.name)  # read only: a dry run records nothing
    if current is None:
        msg = (
            f"unknown job {job.name!r}: the ledger ({ledger!r}) records no running "
            "deployment of it, so there is nothing to rehearse an upgrade against; deploy it "
            "first (without --upgrade-from)"
        )
        raise ConfigError(msg)
    job.check_kafka(settings)  # before the gate and the savepoint: a typo fails in seconds
    _, old = current
    manifest = job.manifest(settings.execution_mode, graph_of(job, settings))
    token = new_token()
    work = settings.state_dir.resolve() / job.name / "dry-runs" / token
    gate = check_upgrade(running_manifest(old), manifest)
    report = DryRunReport(
        job=job.name,
        version=job.version,
        running_version=str(old.get("version")),
        token=token,
        gate=gate.to_json(),
    )
    log.info("dry_run.checked", job=job.name, version=job.version, compatible=gate.compatible)
    if not gate.compatible:
        save_report(report, work)
        _print(report, as_json, gate_text=str(gate))
        print(
            f"flowship: dry run: upgrade of {job.name} to version {job.version} would be "
            "refused; nothing was touched (fix the problems above, see `flowship check`)",
            file=sys.stderr,
        )
        return EXIT_REFUSED

    report.state_source = mode if mode in ("savepoint", "latest-checkpoint") else "path"
    # where production's outputs stood before the savepoint: every output of an input record
    # the rehearsal reads (the savepoint's position onwards) is appended after this
    outputs_from = (
        end_offsets(settings.kafka_bootstrap, [s.topic for s in job.sinks])
        if mode == "savepoint"
        else None
    )
    report.state_from = _obtain_state(job, settings, old, mode, work)
    log.info("dry_run.state", job=job.name, source=report.state_source, at=report.state_from)

    kinds, codecs = _declared_state(job)
    if not is_local(report.state_from):
        report.state_not_read = (
            f"{report.state_from} is on another file system; the state reader reads local "
            "savepoints and checkpoints only; the rehearsal still restores and runs this code"
        )
    elif settings.execution_mode != "thread":
        # process mode keeps Python state as the Python coder's bytes, in descriptors of its own
        report.state_not_read = (
            f"execution mode {settings.execution_mode!r}: the state reader knows the state "
            "layout of thread mode only; the rehearsal still restores and runs this code"
        )
    else:
        try:
            report.operators = read_state(report.state_from, kinds, codecs, work)
        except StateError as exc:
            report.state_error = str(exc)
    log.info("dry_run.state_read", job=job.name, ok=report.state_ok)

    suffix = rehearsal_suffix(token)
    report.rehearsal = _rehearse(job, settings, argv, report.state_from, suffix, work)
    if outputs_from is None:
        report.diff_skipped = (
            "the rehearsal did not start from a savepoint taken now (--upgrade-from "
            f"{'latest-checkpoint' if mode == 'latest-checkpoint' else 'PATH'}), so where "
            "production's outputs for its input begin is not known"
        )
    elif not report.rehearsal.passed:
        report.diff_skipped = "the rehearsal failed"
    else:
        report.diffs = _diff_outputs(job, settings, old, suffix, outputs_from)
    saved = save_report(report, work)
    _print(report, as_json)
    log.info("dry_run.done", job=job.name, passed=report.passed, report=str(saved))
    return EXIT_OK if report.passed else EXIT_DRY_RUN_FAILED


def _print(report: DryRunReport, as_json: bool, gate_text: str = "") -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True, default=str))
        return
    if gate_text:
        print(gate_text)
    print(format_report(report))


def _obtain_state(job: Job, settings: Settings, old: dict[str, Any], mode: str, work: Path) -> str:
    """The savepoint or checkpoint to rehearse from; the running job is never stopped."""
    if mode == "savepoint":
        rest = FlinkRest(old["rest_url"])
        rest.overview()  # unreachable: ClusterError (exit 4), nothing done
        alive = deployment_liveness(old)
        if not alive.alive:
            msg = (
                f"the running version of {job.name!r} (Flink job {old['job_id']} at "
                f"{old['rest_url']}) is not running ({alive.verdict}: {alive.seen}), so no "
                "savepoint can be taken; rehearse from its retained checkpoint with --dry-run "
                "--upgrade-from latest-checkpoint"
            )
            raise ClusterError(msg)
        # where the cluster writes checkpoints (--state-storage), in this dry run's folder
        target = child(settings.storage(job.name), "dry-runs", work.name, "savepoint")
        return rest.trigger_savepoint(old["job_id"], target)
    if mode == "latest-checkpoint":
        alive = deployment_liveness(old, timeout=3.0)
        if alive.unknown:
            msg = (
                f"cannot tell whether the running version of {job.name!r} (Flink job "
                f"{old['job_id']} at {old['rest_url']}) is gone: {alive.seen}; a live job "
                "deletes its older checkpoints as it takes new ones. Rehearse from a savepoint "
                "or checkpoint directory with --dry-run --upgrade-from PATH"
            )
            raise ClusterError(msg)
        if alive.alive:
            msg = (
                f"the running version of {job.name!r} (Flink job {old['job_id']}) is alive and "
                "deletes its older checkpoints as it takes new ones, so a checkpoint may vanish "
                "mid-rehearsal; rehearse from a savepoint (--dry-run --upgrade-from savepoint)"
            )
            raise ConfigError(msg)
        root = child(settings.storage(job.name), "checkpoints")
        found = restore_point(old, root, 0.0)
        if found is None:
            msg = (
                f"no retained checkpoint of Flink job {old['job_id']} under {root}; pass a "
                "savepoint or checkpoint directory with --dry-run --upgrade-from PATH"
            )
            raise ConfigError(msg)
        return found
    found_path = restore_path(mode)
    assert found_path is not None
    return found_path


def _declared_state(job: Job) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], Any]]:
    """{uid: {state: kind}} and {(uid, state): StateCodec} of this code's stateful operators."""
    kinds: dict[str, dict[str, str]] = {}
    codecs: dict[tuple[str, str], Any] = {}
    for uid, info in registered(job.module).items():
        if uid in job.dropped:
            continue
        kinds[uid] = {name: spec.kind for name, spec in info.states.items()}
        for name, spec in info.states.items():
            codecs[(uid, name)] = StateCodec(spec.schema)
    return kinds, codecs


def child_argv(argv: list[str]) -> list[str]:
    """The parent's flags minus the ones the dry run owns (``--dry-run``, ``--json``, ...)."""
    return without_flags(
        argv,
        valued=["--upgrade-from", "--flowship-rehearsal"],
        switches=["--dry-run", "--json", "--bounded"],
    )


def _rehearse(
    job: Job, settings: Settings, argv: list[str], state: str, suffix: str, work: Path
) -> Rehearsal:
    """Run this script as a child on a throwaway mini-cluster from ``state``; what it did."""
    outputs = {rehearsal_name(s.topic, suffix): s.topic for s in job.sinks}
    dead = {rehearsal_name(s.dead_letter_topic, suffix): s.dead_letter_topic for s in job.sources}
    create_twin_topics(settings.kafka_bootstrap, {**outputs, **dead})
    child_dir = work / "rehearsal"
    child_dir.mkdir(parents=True, exist_ok=True)
    log_file = child_dir / "rehearsal.log"
    cmd = [
        sys.executable,
        str(job.script),
        *child_argv(argv),
        "--target",
        "local",
        "--bounded",
        "--state-dir",
        str(child_dir / "state"),
        "--ledger",
        "file",  # its own throwaway directory ledger, never the job's (a Kafka one too)
        "--ledger-dir",
        str(child_dir / "ledger"),
        "--rest-port",
        str(free_port()),
        "--restart-attempts",
        "0",
        "--upgrade-from",
        state.removeprefix("file://").removeprefix("file:"),
        "--flowship-rehearsal",
        suffix,
    ]
    result = Rehearsal(ran=True, log=str(log_file))
    started = time.monotonic()
    child = spawn_detached(cmd, log_file)
    limit = settings.dry_run_timeout_s + 180.0  # the child stops itself at the time limit
    try:
        code = child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        result.error = f"the rehearsal did not end within {limit:.0f}s and was killed"
        code = -1
    result.seconds = round(time.monotonic() - started, 1)
    outcome = _child_result(log_file)
    result.records_in = int(outcome.get("records_in", 0))
    result.truncated = bool(outcome.get("truncated", False))
    if code != 0 and not result.error:
        result.error = str(
            outcome.get("error") or f"the rehearsal exited {code}; see its log {log_file}"
        )
    for topic in outputs:
        result.outputs[topic] = count_committed(settings.kafka_bootstrap, topic)
    for topic in dead:
        result.dead_letters[topic] = count_committed(settings.kafka_bootstrap, topic)
    result.passed = code == 0 and not result.error
    return result


def _diff_outputs(
    job: Job,
    settings: Settings,
    old: dict[str, Any],
    suffix: str,
    outputs_from: dict[tuple[str, int], int],
) -> list[dict[str, Any]]:
    """Each sink's rehearsal outputs against production's for the same input records.

    Production goes on processing the sample too; its outputs for it are committed with its
    checkpoints. So the comparison waits (up to :data:`DIFF_WAIT_S`) until production's
    consumer groups committed past every input the rehearsal wrote outputs for.
    """
    bootstrap = settings.kafka_bootstrap
    before = {
        sink["uid"]: sink for sink in old.get("manifest", {}).get("sinks", []) if "uid" in sink
    }
    groups = {s.topic: s.group_id or f"flowship.{job.name}.{s.uid}" for s in job.sources}
    diffs = []
    for sink in job.sinks:
        previous = before.get(sink.uid)
        candidate = rehearsal_name(sink.topic, suffix)
        theirs = read_outputs(bootstrap, candidate)
        if previous is None:  # nothing of production's to wait for or read
            note = f"sink {sink.uid!r} is new in this version: production wrote nothing to compare"
            production, ours = sink.topic, []
        else:
            note = _wait_for_production(bootstrap, groups, theirs)
            production = previous["topic"]
            start = {p: o for (t, p), o in outputs_from.items() if t == production}
            ours = read_outputs(bootstrap, production, start)
        diff = compare(
            ours,
            theirs,
            decoder(previous["schema"] if previous is not None else sink.schema),
            decoder(sink.schema),
            production_name=production,
            candidate_name=candidate,
        )
        diff.note = note
        log.info("dry_run.diff", job=job.name, sink=sink.uid, summary=diff.summary())
        diffs.append(diff.to_json())
    return diffs


#: How long the output diff waits for production to commit the rehearsal's sample (seconds).
DIFF_WAIT_S = 60.0


def _wait_for_production(bootstrap: str, groups: dict[str, str], outputs: list[Output]) -> str:
    """Wait until production committed past every input address in ``outputs``; "" or why not."""
    needed: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset to commit past
    for where, (_, high) in input_ranges(o.address for o in outputs if o.address).items():
        topic, _, partition = where.rpartition("/")
        with contextlib.suppress(ValueError):
            needed[(topic, int(partition))] = high + 1
    deadline = time.monotonic() + DIFF_WAIT_S
    behind: list[str] = []
    while needed:
        behind = []
        for topic, group in groups.items():
            wanted = [tp for tp in needed if tp[0] == topic]
            if not wanted:
                continue
            done = committed_offsets(bootstrap, group, wanted)
            behind += [f"{t}/{p}" for (t, p) in wanted if done.get((t, p), -1) < needed[(t, p)]]
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if not behind:
        return ""
    return (
        f"production had not committed past the rehearsal's input on {', '.join(behind)} "
        f"within {DIFF_WAIT_S:.0f}s: inputs only in the rehearsal may be ones production had "
        "not processed yet"
    )


def _child_result(log_file: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in log_file.read_text(errors="replace").splitlines():
            if line.startswith(RESULT_PREFIX):
                with contextlib.suppress(ValueError):
                    found = json.loads(line[len(RESULT_PREFIX) :])
    return found


# the child ---------------------------------------------------------------------------------


def run_rehearsal(job: Job, settings: Settings, restore: str | None, suffix: str) -> int:
    """Inside the rehearsal child: run this code from ``restore`` with suffixed Kafka names."""
    rehearsal_name("", suffix)  # validates the suffix
    if restore is None or not settings.is_local or not settings.bounded:
        msg = "--flowship-rehearsal is internal to --dry-run (local, bounded, with a restore path)"
        raise ConfigError(msg)
    options = {
        **flink_options(job, settings),
        **local_options(settings),
        "execution.state-recovery.path": restore,
        # the production sinks' state (their transactions) stays behind: the rehearsal's sinks
        # have suffixed uids, so nothing of production's transactional ids is ever touched
        "execution.state-recovery.ignore-unclaimed-state": "true",
    }
    env = make_env(options)
    job.create_topics(settings, rehearsal=suffix)
    job.build(env, settings, rehearsal=suffix)
    rest = FlinkRest(f"http://127.0.0.1:{settings.rest_port}")
    outcome: dict[str, Any] = {"suffix": suffix}
    # the sample ends at the offsets that are latest now. Restored Kafka splits keep the
    # running version's "no stopping offset", so --bounded alone never ends a restored job:
    # it is stopped once its own (suffixed) consumer group committed up to these offsets
    ends = end_offsets(settings.kafka_bootstrap, [s.topic for s in job.sources])
    groups = {
        rehearsal_name(s.group_id or f"flowship.{job.name}.{s.uid}", suffix): [
            tp for tp in ends if tp[0] == s.topic
        ]
        for s in job.sources
    }
    try:
        client = env.execute_async(f"{job.name}@{job.version}{suffix}")
    except Exception as exc:  # Py4JJavaError: translate at the boundary
        outcome["error"] = _root_cause(str(exc))
        print(RESULT_PREFIX + json.dumps(outcome), flush=True)
        return EXIT_FAILED
    job_id = str(client.get_job_id())
    state = _watch(rest, job_id, settings, ends, groups, outcome)
    outcome["state"] = state
    if "records_in" not in outcome:
        with contextlib.suppress(ClusterError, KeyError):
            outcome["records_in"] = _source_records(rest.job(job_id))
    if state == "FAILED":
        try:
            client.get_job_execution_result().result()
        except Exception as exc:
            outcome["error"] = _root_cause(str(exc))
        outcome.setdefault("error", f"the rehearsal job {job_id} FAILED")
    print(RESULT_PREFIX + json.dumps(outcome), flush=True)
    return EXIT_OK if state in ("FINISHED", "STOPPED") and "error" not in outcome else EXIT_FAILED


def _watch(
    rest: Any,
    job_id: str,
    settings: Settings,
    ends: dict[tuple[str, int], int],
    groups: dict[str, list[tuple[str, int]]],
    outcome: dict[str, Any],
) -> str:
    """Until the rehearsal consumed its sample (then stop it) or ended; its final state."""
    deadline = time.monotonic() + settings.dry_run_timeout_s
    last: dict[tuple[str, int], int] | None = None
    changed = time.monotonic()
    state = "UNKNOWN"
    while True:
        with contextlib.suppress(ClusterError):
            state = rest.job(job_id)["state"]
        if state in ("FINISHED", "FAILED", "CANCELED"):
            return str(state)
        done = False
        if state == "RUNNING":
            committed: dict[tuple[str, int], int] = {}
            for group, partitions in groups.items():
                committed.update(committed_offsets(settings.kafka_bootstrap, group, partitions))
            if committed != last:
                last, changed = committed, time.monotonic()
            done = sample_consumed(ends, committed, time.monotonic() - changed > 8.0)
        late = time.monotonic() > deadline
        if done or late:
            # stopping with a savepoint commits what the sinks wrote; the sample's outputs are
            # committed already once the offsets are (both happen on checkpoint completion)
            with contextlib.suppress(ClusterError, KeyError):
                outcome["records_in"] = _settled_source_records(rest, job_id)
            outcome["truncated"] = late and not done
            try:
                rest.stop_with_savepoint(job_id, Path(settings.state_dir).resolve() / "stop")
            except ClusterError as exc:
                outcome["error"] = f"stopping the rehearsal failed: {exc}"
            return "STOPPED"
        time.sleep(1.0)


def _settled_source_records(rest: Any, job_id: str) -> int:
    """The sources' record count once the REST metrics cache has caught up with the job.

    Job details serve metrics from a cache that a request refreshes (asynchronously) when it is
    older than ``metrics.fetcher.update-interval``: the first read after a quiet spell can be
    stale, even 0 for a rehearsal shorter than one interval. Read until two reads one interval
    apart agree (the sources go on reading past the sample, so give up after a few).
    """
    seen = _source_records(rest.job(job_id))
    for _ in range(4):
        time.sleep(1.2 * METRICS_FETCH_MS / 1000)
        now = _source_records(rest.job(job_id))
        if now == seen and now > 0:
            break
        seen = now
    return seen


def _source_records(details: dict[str, Any]) -> int:
    """Records the source vertices emitted (the sample's size, as the job saw it)."""
    total = 0
    for vertex in details.get("vertices", []):
        if str(vertex.get("name", "")).startswith("Source:"):
            total += int(vertex.get("metrics", {}).get("write-records", 0))
    return total


def _root_cause(text: str) -> str:
    causes = [line for line in text.splitlines() if line.strip().startswith("Caused by:")]
    root = causes[-1].strip() if causes else (text.splitlines() or ["unknown error"])[0]
    return root[:2000]
