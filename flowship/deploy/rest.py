"""A small, typed client for the Flink REST API (standard library only; no PyFlink import)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowship.deploy.savepoints import as_storage
from flowship.errors import ClusterError


class FlinkRest:
    """Talk to a Flink JobManager (session cluster or mini-cluster) over its REST API."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            msg = f"Flink REST {method} {self.url}{path} answered {exc.code}: {detail}"
            raise ClusterError(msg) from exc
        except (urllib.error.URLError, OSError) as exc:
            msg = (
                f"Flink REST API at {self.url} is unreachable ({exc}); is the cluster "
                "running and the URL (--target / FLOWSHIP_TARGET) right?"
            )
            raise ClusterError(msg) from exc
        return json.loads(raw) if raw else None

    def overview(self) -> dict[str, Any]:
        """``GET /overview``: cluster summary (task slots, jobs running, Flink version)."""
        result: dict[str, Any] = self._call("GET", "/overview")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        """``GET /jobs/overview``: every job with its name, state and timings."""
        result: list[dict[str, Any]] = self._call("GET", "/jobs/overview")["jobs"]
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/:id``: one job's details, vertices included."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}")
        return result

    def stop_with_savepoint(
        self, job_id: str, target_directory: str | Path, timeout: float = 300.0
    ) -> str:
        """``POST /jobs/:id/stop``, then poll the trigger; return the savepoint's location.

        PyFlink 2.2.1's ``JobClient.stop_with_savepoint`` is broken (it calls a Java signature
        that no longer exists), so flowship goes through REST, which also works on the embedded
        mini-cluster once ``rest.port`` is set. ``target_directory`` should be fresh for each
        stop: an embedded mini-cluster exits as soon as its job stops, taking its REST endpoint
        with it, and a savepoint that completed in this directory is then known to be ours.
        """
        target = as_storage(target_directory)
        body = {"drain": False, "formatType": "CANONICAL", "targetDirectory": str(target)}
        trigger = self._call("POST", f"/jobs/{job_id}/stop", body)["request-id"]
        local = target if isinstance(target, Path) else None
        operation = self._await_operation(
            f"/jobs/{job_id}/savepoints/{trigger}",
            f"stop-with-savepoint of job {job_id}",
            timeout,
            ending=f"(no savepoint in {target})",
            gone=None if local is None else lambda: completed_savepoint(local),
        )
        location: str = operation["location"]
        return location

    def trigger_savepoint(
        self, job_id: str, target_directory: str | Path, timeout: float = 300.0
    ) -> str:
        """``POST /jobs/:id/savepoints`` (not cancelling), then poll; the savepoint's location.

        The job keeps running: this is the dry run's savepoint, taken without stopping anything.
        """
        target = as_storage(target_directory)
        body = {"cancel-job": False, "formatType": "CANONICAL", "target-directory": str(target)}
        trigger = self._call("POST", f"/jobs/{job_id}/savepoints", body)["request-id"]
        operation = self._await_operation(
            f"/jobs/{job_id}/savepoints/{trigger}",
            f"savepoint of job {job_id} (job left running)",
            timeout,
            ending=f"(no savepoint in {target}); the job was left running",
        )
        location: str = operation["location"]
        return location

    def checkpoint_now(self, job_id: str, timeout: float = 30.0) -> int:
        """``POST /jobs/:id/checkpoints``, then poll the trigger; the completed checkpoint's id.

        Raises ClusterError when the checkpoint could not be taken (for instance while some of
        the job's tasks are still starting) or did not complete within ``timeout``.
        """
        trigger = self._call("POST", f"/jobs/{job_id}/checkpoints", {})["request-id"]
        operation = self._await_operation(
            f"/jobs/{job_id}/checkpoints/{trigger}",
            f"checkpoint of job {job_id}",
            timeout,
            interval=0.05,
            brief=True,
        )
        if "checkpointId" not in operation:
            msg = f"checkpoint of job {job_id} completed without a checkpoint id: {operation}"
            raise ClusterError(msg[:500])
        return int(operation["checkpointId"])

    def _await_operation(
        self,
        path: str,
        what: str,
        timeout: float,
        *,
        interval: float = 0.3,
        ending: str = "",
        brief: bool = False,
        gone: Callable[[], str | None] | None = None,
    ) -> dict[str, Any]:
        """Poll an asynchronous operation (a savepoint or checkpoint trigger) until it completed.

        Returns the completed operation; raises ClusterError if it failed (its stack trace, or
        only the first line if ``brief``) or did not complete within ``timeout``. ``gone``: while
        the REST endpoint does not answer, whether the operation's result is there anyway (its
        location); an embedded mini-cluster exits as soon as its job stopped.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self._call("GET", path)
            except ClusterError:
                if gone is None:
                    raise
                found = gone()
                if found is not None:
                    return {"location": found}
                time.sleep(interval)
                continue
            if status["status"]["id"] == "COMPLETED":
                operation: dict[str, Any] = status.get("operation") or {}
                # failed: "failure-cause" (savepoints) or "failureCause" (checkpoints)
                failure = operation.get("failure-cause") or operation.get("failureCause")
                if failure is not None:
                    trace = str(failure.get("stack-trace", operation))
                    cause = trace.splitlines()[0][:500] if brief else trace[:2000]
                    msg = f"{what} failed: {cause}"
                    raise ClusterError(msg)
                return operation
            time.sleep(interval)
        msg = f"{what} did not complete within {timeout:.0f}s"
        raise ClusterError(f"{msg} {ending}" if ending else msg)

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints``: counts, latest completed and restored checkpoints."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}/checkpoints")
        return result

    def exceptions(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/:id/exceptions``: the job's failure history (newest first)."""
        result: dict[str, Any] = self._call("GET", f"/jobs/{job_id}/exceptions")
        return result

    def subtask_metrics(
        self, job_id: str, vertex_id: str, ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """``GET /jobs/:id/vertices/:vid/subtasks/metrics``: the metric ids its subtasks report.

        Given ``ids``: their values over all subtasks (``sum``, ``min`` and ``max`` of each).
        """
        path = f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
        if ids:
            path += "?" + urllib.parse.urlencode({"get": ",".join(ids), "agg": "sum,min,max"})
        result: list[dict[str, Any]] = self._call("GET", path) or []
        return result

    def cancel(self, job_id: str) -> None:
        """``PATCH /jobs/:id?mode=cancel``: cancel a job (no savepoint)."""
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")


def completed_savepoint(target: Path) -> str | None:
    """The savepoint written into ``target`` (a directory holding ``_metadata``), if any."""
    done = sorted(p.parent for p in target.glob("savepoint-*/_metadata"))
    return done[-1].as_uri() if done else None
