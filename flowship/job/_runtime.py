"""Flink configuration and execution for flowship jobs (imports PyFlink lazily)."""

from __future__ import annotations

import os
import re
import site
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowship._jars import find_jars
from flowship.deploy.savepoints import child, storage_uri

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

    from flowship.job._job import Job
    from flowship.job._settings import Settings


def flink_options(job: Job, settings: Settings) -> dict[str, str]:
    """The Flink options flowship sets for a job (its defaults, against PyFlink's)."""
    storage = settings.storage(job.name)
    return {
        "pipeline.name": f"{job.name}@{job.version}",
        "pipeline.jars": find_jars().pipeline_jars(),
        "parallelism.default": str(settings.parallelism),
        "python.execution-mode": settings.execution_mode,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.pythonpath": python_path(job),
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": storage_uri(child(storage, "checkpoints")),
        "execution.checkpointing.savepoint-dir": storage_uri(child(storage, "savepoints")),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(settings.restart_attempts),
        "restart-strategy.fixed-delay.delay": f"{settings.restart_delay_ms} ms",
        # keep Python operators fused (no serialization between chained Python functions)
        "python.operator-chaining.enabled": "true",
    }


def python_path(job: Job) -> str:
    """Where the TaskManager's Python finds flowship, its dependencies and the job's own modules.

    In thread mode PyFlink embeds CPython in the JVM; that interpreter does not see a virtualenv's
    site-packages (nor an editable install's path hooks) unless they are put on its path. The
    client's own ``sys.path`` is mirrored too: job code pickled by reference (functions of modules
    the script imported) must be importable where it runs.
    """
    import flowship

    paths = [str(Path(flowship.__file__).resolve().parent.parent), str(job.script.parent)]
    for entry in [*site.getsitepackages(), *sys.path]:
        if entry and entry not in paths and Path(entry).is_dir():
            paths.append(entry)
    return os.pathsep.join(paths)


METRICS_FETCH_MS = 500


def local_options(settings: Settings) -> dict[str, str]:
    """Options only the embedded mini-cluster needs: its REST endpoint on loopback."""
    return {
        "rest.port": str(settings.rest_port),
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": str(max(settings.parallelism, 1)),
        # REST job details carry metrics from a cache refreshed at most this often (10 s by
        # default): the health watch and --dry-run read record counts from it
        "metrics.fetcher.update-interval": f"{METRICS_FETCH_MS} ms",
    }


#: Options flowship gives the JVM that runs a local job (the embedded mini-cluster). PyFlink's
#: thread mode hands every Python operator's results back through an iterator whose end pemja
#: signals with a Java exception: two or more per record. The JVM writes each exception it
#: throws into an event ring buffer (kept for crash reports), formatting a message every time;
#: without it the example job runs about 5 % faster (see CHANGELOG). Only the crash report's
#: event lists lose their entries; exceptions, stack traces and logs are unchanged.
LOCAL_JVM_OPTIONS = ("-XX:+UnlockDiagnosticVMOptions", "-XX:-LogEvents")


def local_jvm_args(*, runs_job: bool = False) -> str | None:
    """Set ``JVM_ARGS`` for the JVM PyFlink is about to start; return its previous value.

    PyFlink's gateway puts ``JVM_ARGS`` on the local JVM's command line. Added to what the
    caller set: :data:`LOCAL_JVM_OPTIONS` (unless ``JVM_ARGS`` decides about the event log
    itself) and the class-data archive's options (:mod:`flowship.job._class_cache`; a JVM that
    ``runs_job`` may write it). Nothing changes when the JVM runs already. The caller puts
    the previous value back once the JVM started (:func:`make_env`), so processes it starts
    choose their own.
    """
    from pyflink import java_gateway

    from flowship.job._class_cache import class_cache_args

    previous = os.environ.get("JVM_ARGS")
    if java_gateway._gateway is not None:
        return previous
    current = previous or ""
    added = [] if "LogEvents" in current else list(LOCAL_JVM_OPTIONS)
    added += class_cache_args(" ".join([current, *added]).strip(), write=runs_job)
    if added:
        os.environ["JVM_ARGS"] = " ".join([current, *added]).strip()
    return previous


def make_env(options: dict[str, str], *, runs_job: bool = False) -> StreamExecutionEnvironment:
    """A StreamExecutionEnvironment configured with ``options`` (jars loaded for py4j too).

    ``runs_job``: the job runs in this JVM (the local target), see :func:`local_jvm_args`.
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    previous = local_jvm_args(runs_job=runs_job)
    config = Configuration()
    for key, value in options.items():
        if key != "pipeline.jars":
            config.set_string(key, value)
    try:
        env = StreamExecutionEnvironment.get_execution_environment(config)
    finally:  # the JVM runs: what it was started with is not for the processes this one starts
        if previous is None:
            os.environ.pop("JVM_ARGS", None)
        else:
            os.environ["JVM_ARGS"] = previous
    # add_jars also puts the jars on the client class loader, so the builders can load them
    env.add_jars(*options["pipeline.jars"].split(";"))
    return env


def restore_options(
    restore: str | None, job: Job | None = None, *, shadow: bool = False
) -> dict[str, str]:
    """Flink options to restore from ``restore``.

    State with no operator to go to is let go for uids the new code declared dropped, and for a
    ``stateless=True`` job, whose savepoint carries only its sources' Kafka offsets over: any of
    its other operators (sinks included) may be renamed, added or removed. A ``shadow`` lets
    the running version's sink state go: its sinks have uids (and transactional ids) of their
    own, so it never claims, commits or aborts a transaction of production's.
    """
    if restore is None:
        return {}
    options = {"execution.state-recovery.path": restore}
    if shadow or (job is not None and (job.dropped or job.stateless)):
        # check_upgrade allowed the dropped uids; Flink refuses unclaimed state unless told
        options["execution.state-recovery.ignore-unclaimed-state"] = "true"
    return options


def set_options(env: StreamExecutionEnvironment, options: dict[str, str]) -> None:
    """Set ``options`` on an environment whose graph is built already.

    The executor, and the restore point, are read from its configuration only when the job is
    submitted: an upgrade can build the new graph first and name the savepoint later.
    """
    from pyflink.util.java_utils import get_j_env_configuration

    config = get_j_env_configuration(env._j_stream_execution_environment)
    for key, value in options.items():
        config.setString(key, value)


def fix_job_id(stream_graph: Any, job_id: str) -> None:
    """Give a Java ``StreamGraph`` the Flink job id ``job_id`` (32 hex digits) to run under.

    The targets record the id at SUBMITTED before they start the job: a rerun finds the job (a
    session cluster's) or its checkpoints (``<checkpoints>/<job id>``) by it.
    """
    from pyflink.java_gateway import get_gateway

    job_ids = get_gateway().jvm.org.apache.flink.api.common.JobID
    stream_graph.setJobId(job_ids.fromHexString(job_id))


def execute(env: StreamExecutionEnvironment, job: Job, *, detached: bool) -> Any:
    """Run the built graph: block until it ends, or submit and return its JobClient."""
    name = f"{job.name}@{job.version}"
    if detached:
        return env.execute_async(name)
    return env.execute(name)


def java_error(job: Job, exc: BaseException, restore: str | None = None) -> str:
    """A Flink (Java) failure as one line: the root cause, where it happened, what to do."""
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
