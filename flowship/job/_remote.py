"""Submitting a job to a Flink session cluster straight from the job's own process.

The graph is built, and the stream graph generated, before anything is stopped: an upgrade only
has to set the savepoint to restore from and hand the prepared graph to the cluster's REST API
the moment the old version's savepoint completes. (Running the script again under ``flink run``
would start a JVM, start Python, import the job and build its graph *after* the old version
stopped: seconds of no output.)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from flowship._log import get_logger
from flowship.errors import JobFailedError

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


class PreparedSubmission:
    """A job's graph, built in this process and ready to submit to a session cluster."""

    def __init__(self, job: Job, settings: Settings) -> None:
        from flowship.job._runtime import flink_options, make_env, set_options

        started = time.monotonic()
        self._job = job
        self._target = settings.target
        self._env = make_env(flink_options(job, settings))
        # a script run by plain Python gets a local environment (execution.target=local);
        # pointing its configuration at the cluster turns it into a remote one
        set_options(self._env, remote_options(settings.target))
        job.build(self._env, settings)
        # the Python operator configuration, chaining and the stream graph: all done up front
        self._graph = self._env._generate_stream_graph(
            clear_transformations=True, job_name=f"{job.name}@{job.version}"
        )
        self.prepared_ms = int((time.monotonic() - started) * 1000)
        log.info("job.prepared", job=job.name, version=job.version, duration_ms=self.prepared_ms)

    def submit(self, restore: str | None) -> str:
        """Submit the prepared graph, restoring from ``restore`` if given; return the job id."""
        from flowship.job._main import _java_error
        from flowship.job._runtime import restore_options, set_options

        j_env = self._env._j_stream_execution_environment
        set_options(self._env, restore_options(restore, self._job))
        started = time.monotonic()
        log.info(
            "job.submit",
            job=self._job.name,
            version=self._job.version,
            target=self._target,
            restored_from=restore,
        )
        try:
            client: Any = j_env.executeAsync(self._graph)
        except Exception as exc:  # Py4JJavaError: translate at the boundary
            msg = f"submitting to {self._target} failed: {_java_error(self._job, exc)}"
            raise JobFailedError(msg) from exc
        job_id = str(client.getJobID())
        log.info(
            "job.submitted",
            job=self._job.name,
            job_id=job_id,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return job_id
