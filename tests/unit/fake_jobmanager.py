"""A fake Flink JobManager for unit tests: a real HTTP server with Flink 2.2's REST answers.

``GET /jobs/ID`` answers the job's state (500 for the ``broken`` id, 404 for an unknown one);
``GET /jobs/ID/checkpoints`` answers its checkpoint history, whose latest completed checkpoint is
``checkpoints[ID]`` (none for a known job not in it). ``PATCH /jobs/ID?mode=cancel`` is
accepted (202) for a known job and appended to ``cancels``, but changes nothing: a cancel Flink
never carries out (404 for an unknown job). Nothing else is served (a ``POST``: a submission,
a savepoint, a stop, is answered 501). Every request, served or not, is appended to
``requests`` (``"METHOD /path"``): a test can tell that nothing was submitted or stopped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serve(
    states: Mapping[str, str],
    broken: str,
    checkpoints: Mapping[str, str] | None = None,
    cancels: list[str] | None = None,
    requests: list[str] | None = None,
) -> Iterator[str]:
    """Serve ``states`` (job id -> Flink state) on loopback; yields the REST URL."""
    completed = dict(checkpoints or {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            if parsed and requests is not None:
                requests.append(f"{self.command} {self.path}")
            return parsed

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            job_id = parts[1] if len(parts) > 1 else ""
            if parts[-1] == "checkpoints" and job_id in states:
                path = completed.get(job_id)
                latest = {"id": 9, "external_path": path} if path else None
                code, body = 200, {"counts": {}, "latest": {"completed": latest}}
            elif job_id == broken:
                code, body = 500, {"errors": ["Internal server error."]}
            elif job_id in states:
                code, body = 200, {"jid": job_id, "state": states[job_id], "vertices": []}
            else:
                code, body = 404, {"errors": ["Job could not be found."]}
            self._answer(code, body)

        def do_PATCH(self) -> None:
            job_id = self.path.split("?")[0].strip("/").split("/")[-1]
            if job_id not in states:
                self._answer(404, {"errors": ["Job could not be found."]})
                return
            if cancels is not None:
                cancels.append(job_id)
            self._answer(202, {})

        def _answer(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
