"""A small, typed client for the Flink REST API (standard library only; no PyFlink import)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

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

    def cancel(self, job_id: str) -> None:
        """``PATCH /jobs/:id?mode=cancel``: cancel a job (no savepoint)."""
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")
