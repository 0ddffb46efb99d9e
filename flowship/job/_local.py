"""The local target: the job on an embedded mini-cluster inside this very process.

The deployment engine (:mod:`flowship.deploy.engine`) drives it; this module holds what is local
about it: the graph is built before anything is stopped (the mini-cluster itself can only start
once the old version has let go of the REST port), the process records its pid, and it runs the
job until the job ends (bounded input) or is stopped with a savepoint (the next upgrade).
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from flowship._log import get_logger
from flowship.deploy.alive import process_start
from flowship.deploy.engine import Target
from flowship.deploy.rest import FlinkRest
from flowship.errors import ClusterError, JobFailedError
from flowship.job._graph import describe_env
from flowship.job._runtime import (
    fix_job_id,
    flink_options,
    java_error,
    local_options,
    make_env,
    restore_options,
    set_options,
)

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

log = get_logger("flowship.job")

#: Seconds the mini-cluster gets to report the job RUNNING.
START_TIMEOUT = 120.0
#: Seconds a stopped or cancelled version gets to let go of the REST port.
PORT_TIMEOUT = 60.0
#: Seconds a cancelled version's mini-cluster gets to shut down before its JVM is ended.
CANCELLED_TIMEOUT = 30.0


class LocalTarget(Target):
    """Runs the job on a mini-cluster in this process, its REST API on ``--rest-port``."""

    in_process = True

    def __init__(
        self, job: Job, settings: Settings, replaces: str | None = None, shadow: bool = False
    ) -> None:
        self._job = job
        self._settings = settings
        self.rest_url = f"http://127.0.0.1:{settings.rest_port}"
        self._env = make_env(
            {**flink_options(job, settings), **local_options(settings)}, runs_job=True
        )
        job.build(self._env, settings, replaces=replaces, shadow=shadow)
        self._shadow = shadow
        # for the gate: the graph Flink will run, described from a stream graph of its own
        self.graph = describe_env(self._env)
        # the Python operator configuration, chaining and the stream graph: all done up front
        self.stream_graph = self._env._generate_stream_graph(
            clear_transformations=True, job_name=f"{job.name}@{job.version}"
        )
        self._client: Any = None
        self._job_id: str | None = None
        self._started = time.monotonic()
        from pyflink.java_gateway import get_gateway

        #: the JVM the mini-cluster runs in (PyFlink's gateway, a child of this process)
        self._jvm_pid = int(get_gateway().jvm.java.lang.ProcessHandle.current().pid())

    def prepare(self) -> None:
        """Kafka answers and the sources' topics exist; create the control plane's topics.

        The control plane's topics: its control topic and the sinks' side topics.
        """
        self._job.check_kafka(self._settings)
        self._job.create_topics(self._settings, shadow=self._shadow)

    def new_job_id(self) -> str:
        """A fresh Flink job id for the next :meth:`start`, recorded at SUBMITTED first.

        The job dies with this process, so there is nothing to adopt; the id tells a rerun
        which checkpoints are this job's (``<checkpoints>/<job id>/chk-N``) with no clocks.
        """
        self._job_id = uuid.uuid4().hex
        return self._job_id

    def old_version_stopped(self) -> None:
        """The old local version exits once stopped: wait for its REST port before reusing it."""
        wait_port_free(self._settings.rest_port, timeout=PORT_TIMEOUT)

    def cancelled(self) -> None:
        """The cancelled version's mini-cluster shuts down: wait for the REST port.

        Flink confirmed the cancel, but a mini-cluster whose task is stuck in Python code (a
        version that takes long per record, say) can take minutes to let go of the port, and
        the previous version needs it to start: the job must not stay down meanwhile. The
        mini-cluster lives in this process's JVM, which holds nothing else by now (a rollback
        starts the previous version in a process of its own): end that JVM.
        """
        port = self._settings.rest_port
        try:
            wait_port_free(port, timeout=CANCELLED_TIMEOUT)
            return
        except ClusterError:
            pid = self._jvm_pid
        log.warning(
            "job.jvm_ended",
            job=self._job.name,
            version=self._job.version,
            pid=pid,
            reason=f"the cancelled version's mini-cluster still holds REST port {port} after "
            f"{CANCELLED_TIMEOUT:.0f}s",
        )
        os.kill(pid, signal.SIGKILL)
        wait_port_free(port, timeout=PORT_TIMEOUT)

    def start(self, restore: str | None, deployment: str) -> str:
        """Execute the graph (from ``restore``); the job id once RUNNING (or already FINISHED)."""
        job, settings = self._job, self._settings
        set_options(self._env, restore_options(restore, job, shadow=self._shadow))
        log.info(
            "job.start",
            job=job.name,
            version=job.version,
            target="local",
            rest=self.rest_url,
            mode=settings.execution_mode,
            bounded=settings.bounded,
            restored_from=restore,
            deployment=deployment,
        )
        try:
            from pyflink.common.job_client import JobClient

            j_env = self._env._j_stream_execution_environment
            if self._job_id is not None:
                fix_job_id(self.stream_graph, self._job_id)
                self._job_id = None  # one execution per id
            self._client = JobClient(j_env.executeAsync(self.stream_graph))
            job_id = str(self._client.get_job_id())
            self._wait_running(job_id)
        except Exception as exc:  # Py4JJavaError and friends: translate at the boundary
            raise JobFailedError(java_error(job, exc, restore)) from exc
        return job_id

    def _wait_running(self, job_id: str) -> None:
        """Until the job is RUNNING (or already FINISHED, for a short bounded run)."""
        rest = FlinkRest(self.rest_url)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                state = rest.job(job_id)["state"]
            except ClusterError:
                state = "UNKNOWN"
            if state in ("RUNNING", "FINISHED"):
                return
            if state in ("FAILED", "CANCELED"):
                break
            time.sleep(0.2)
        self._client.get_job_execution_result().result()  # raises the job's failure, if it failed

    def recorded(self) -> dict[str, Any]:
        """The job runs in this process: its pid and start (and its lane when not the default).

        ``pid_start`` tells this process from a later one given the same pid (after a reboot,
        say): a job whose process is gone is then never taken for one that runs.
        """
        start = process_start()
        return {
            "pid": os.getpid(),
            **({"pid_start": start} if start else {}),
            **({"lane": self._job.lane} if self._job.lane else {}),
        }

    def announce(self, job_id: str, deployment: str) -> None:
        """Log ``job.running``."""
        log.info(
            "job.running",
            job=self._job.name,
            version=self._job.version,
            job_id=job_id,
            deployment=deployment,
        )

    def finish(self) -> None:
        """Block until the job ends: input exhausted (--bounded), or stopped for an upgrade."""
        try:
            self._client.get_job_execution_result().result()
        except Exception as exc:
            raise JobFailedError(java_error(self._job, exc)) from exc
        log.info(
            "job.finished",
            job=self._job.name,
            version=self._job.version,
            duration_ms=int((time.monotonic() - self._started) * 1000),
            note="input exhausted, or stopped with a savepoint for an upgrade",
        )


def wait_port_free(port: int, timeout: float) -> None:
    """Wait until nothing listens on loopback ``port`` any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)
    msg = f"REST port {port} is still in use after {timeout:.0f}s; is another job running?"
    raise ClusterError(msg)
