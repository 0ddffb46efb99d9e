"""The cluster target: submitting a job to a Flink session cluster from the job's own process.

The graph is built, and the stream graph generated, before anything is stopped: an upgrade only
has to set the savepoint to restore from and hand the prepared graph to the cluster's REST API
the moment the old version's savepoint completes. (Running the script again under ``flink run``
would start a JVM, start Python, import the job and build its graph *after* the old version
stopped: seconds of no output.)
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flowship._log import get_logger
from flowship.deploy.alive import cancel_confirmed
from flowship.deploy.engine import Target
from flowship.deploy.ledger import JOB_SUBMITTED, fault_point
from flowship.deploy.rest import FlinkRest
from flowship.errors import JobFailedError
from flowship.job._graph import describe_env
from flowship.job._runtime import (
    fix_job_id,
    flink_options,
    java_error,
    make_env,
    restore_options,
    set_options,
)

if TYPE_CHECKING:
    from flowship.job._job import Job
    from flowship.job._settings import Settings

log = get_logger("flowship.job")


def remote_options(target: str) -> dict[str, str]:
    """Flink options that send a pipeline to the session cluster whose REST URL is ``target``."""
    url = urlparse(target)
    options = {
        "execution.target": "remote",
        "rest.address": url.hostname or "127.0.0.1",
        "rest.port": str(url.port or (443 if url.scheme == "https" else 8081)),
    }
    if url.scheme == "https":
        options["security.ssl.rest.enabled"] = "true"
    return options


class ClusterTarget(Target):
    """A job's graph, built in this process and ready to submit to a session cluster."""

    def __init__(
        self, job: Job, settings: Settings, replaces: str | None = None, shadow: bool = False
    ) -> None:
        self.rest_url = settings.target
        self._rest = FlinkRest(settings.target)
        self._rest.overview()  # fail fast, with a clear error, if unreachable
        started = time.monotonic()
        self._job = job
        self._settings = settings
        self._env = make_env(flink_options(job, settings))
        # a script run by plain Python gets a local environment (execution.target=local);
        # pointing its configuration at the cluster turns it into a remote one
        set_options(self._env, remote_options(settings.target))
        job.build(self._env, settings, replaces=replaces, shadow=shadow)
        self._shadow = shadow
        # for the gate: the graph Flink will run, described from a stream graph of its own
        self.graph = describe_env(self._env)
        # the Python operator configuration, chaining and the stream graph: all done up front
        self.stream_graph = self._env._generate_stream_graph(
            clear_transformations=True, job_name=f"{job.name}@{job.version}"
        )
        self._job_id: str | None = None
        self.prepared_ms = int((time.monotonic() - started) * 1000)
        log.info("job.prepared", job=job.name, version=job.version, duration_ms=self.prepared_ms)

    def prepare(self) -> None:
        """Kafka answers and the sources' topics exist; create the control plane's topics.

        The control plane's topics: its control topic and the sinks' side topics.
        """
        self._job.check_kafka(self._settings)
        self._job.create_topics(self._settings, shadow=self._shadow)

    def new_job_id(self) -> str:
        """A fresh Flink job id (32 hex digits) for the next submission (recorded before it)."""
        self._job_id = uuid.uuid4().hex
        return self._job_id

    def start(self, restore: str | None, deployment: str) -> str:
        """Submit the prepared graph (restoring from ``restore``); the job id once RUNNING."""
        job_id = self.submit(restore)
        fault_point(JOB_SUBMITTED)
        try:
            self._wait_running(job_id)
        except JobFailedError:
            # never left behind: it may still come up (a slow start) while the engine rolls back
            cancel_confirmed(self.rest_url, job_id)
            raise
        return job_id

    def submit(self, restore: str | None) -> str:
        """Submit the prepared graph, restoring from ``restore`` if given; return the job id."""
        j_env = self._env._j_stream_execution_environment
        set_options(self._env, restore_options(restore, self._job, shadow=self._shadow))
        if self._job_id is not None:
            # the id recorded at SUBMITTED: a rerun finds the job by it, should this process die
            fix_job_id(self.stream_graph, self._job_id)
            self._job_id = None  # one submission per id: the cluster refuses a second
        started = time.monotonic()
        log.info(
            "job.submit",
            job=self._job.name,
            version=self._job.version,
            target=self.rest_url,
            restored_from=restore,
        )
        try:
            client: Any = j_env.executeAsync(self.stream_graph)
        except Exception as exc:  # Py4JJavaError: translate at the boundary
            msg = f"submitting to {self.rest_url} failed: {java_error(self._job, exc)}"
            raise JobFailedError(msg) from exc
        job_id = str(client.getJobID())
        log.info(
            "job.submitted",
            job=self._job.name,
            job_id=job_id,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return job_id

    def _wait_running(self, job_id: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self._rest.job(job_id)["state"]
            if state == "RUNNING":
                return
            if state in ("FAILED", "CANCELED", "FINISHED"):
                break
            time.sleep(0.3)
        msg = (
            f"Flink job {job_id} is {state}, not RUNNING (see "
            f"{self._rest.url}/jobs/{job_id}/exceptions)"
        )
        raise JobFailedError(msg)

    def recorded(self) -> dict[str, Any]:
        """Its lane when not the default (see :attr:`flowship.job.Job.lane`)."""
        return {"lane": self._job.lane} if self._job.lane else {}

    def announce(self, job_id: str, deployment: str) -> None:
        """Log ``job.submitted`` and say where the job runs."""
        job = self._job
        log.info(
            "job.submitted",
            job=job.name,
            version=job.version,
            job_id=job_id,
            target=self.rest_url,
            deployment=deployment,
        )
        print(
            f"flowship: job {job.name}@{job.version} submitted to {self.rest_url} as {job_id}",
            flush=True,
        )
