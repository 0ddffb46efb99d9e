"""FlinkRest's polling of asynchronous operations (savepoints, checkpoints), no JVM.

The real REST API is exercised by the integration and e2e tests; these pin the parts that are
hard to provoke there: how a failed operation, a timeout and a vanished endpoint are reported.
The answers below have the shapes Flink 2.2's REST API gives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowship.deploy.rest import FlinkRest
from flowship.errors import ClusterError


class Script:
    """What the fake JobManager answers: POST -> a trigger id; GET -> the next status."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.down_after_post = False


@pytest.fixture
def flink() -> Iterator[tuple[FlinkRest, Script, ThreadingHTTPServer]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            script.requests.append(("POST", self.path, json.loads(self.rfile.read(length))))
            self._answer({"request-id": "t1"})
            if script.down_after_post:
                threading.Thread(target=stop_listening).start()

        def do_GET(self) -> None:
            script.requests.append(("GET", self.path, None))
            status = script.statuses.pop(0) if len(script.statuses) > 1 else script.statuses[0]
            self._answer(status)

    def stop_listening() -> None:
        server.shutdown()
        server.server_close()  # connections are refused from now on, as from an exited cluster

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FlinkRest(f"http://127.0.0.1:{server.server_port}", timeout=2.0), script, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


IN_PROGRESS = {"status": {"id": "IN_PROGRESS"}}


def test_a_savepoint_is_polled_until_it_completed(flink: Any, tmp_path: Path) -> None:
    rest, script, _ = flink
    done = {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-1"}}
    script.statuses = [IN_PROGRESS, IN_PROGRESS, done]
    assert rest.trigger_savepoint("j1", tmp_path) == "file:/sp/savepoint-1"
    post = script.requests[0]
    assert post[:2] == ("POST", "/jobs/j1/savepoints")
    assert post[2] == {
        "cancel-job": False,
        "formatType": "CANONICAL",
        "target-directory": str(tmp_path),
    }
    assert [r[1] for r in script.requests[1:]] == ["/jobs/j1/savepoints/t1"] * 3


def test_a_failed_savepoint_says_why_and_keeps_flinks_reason(flink: Any, tmp_path: Path) -> None:
    rest, script, _ = flink
    trace = (
        "java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint."
        "CheckpointException: Not all required tasks are currently running.\n\tat x.y(Z.java:1)"
    )
    script.statuses = [
        {"status": {"id": "COMPLETED"}, "operation": {"failure-cause": {"stack-trace": trace}}}
    ]
    with pytest.raises(ClusterError) as caught:
        rest.stop_with_savepoint("j1", tmp_path)
    # upgrade.stop_with_savepoint retries on this very sentence: it must survive
    assert "stop-with-savepoint of job j1 failed" in str(caught.value)
    assert "Not all required tasks are currently running" in str(caught.value)
    assert script.requests[0][2]["drain"] is False


def test_a_failed_checkpoint_reports_its_first_line(flink: Any) -> None:
    rest, script, _ = flink
    failure = {"stack-trace": "CheckpointException: Checkpoint was declined.\n\tat a.b(C.java:9)"}
    script.statuses = [
        IN_PROGRESS,
        {"status": {"id": "COMPLETED"}, "operation": {"failureCause": failure}},
    ]
    with pytest.raises(ClusterError, match=r"^checkpoint of job j1 failed: .*declined\.$"):
        rest.checkpoint_now("j1")


def test_a_checkpoint_returns_its_id(flink: Any) -> None:
    rest, script, _ = flink
    script.statuses = [
        IN_PROGRESS,
        {"status": {"id": "COMPLETED"}, "operation": {"checkpointId": 7}},
    ]
    assert rest.checkpoint_now("j1") == 7


def test_an_operation_that_never_completes_times_out(flink: Any, tmp_path: Path) -> None:
    rest, script, _ = flink
    script.statuses = [IN_PROGRESS]
    with pytest.raises(ClusterError, match=r"did not complete within 1s .*job was left running"):
        rest.trigger_savepoint("j1", tmp_path, timeout=1.0)


def test_a_stop_whose_endpoint_went_away_finds_the_savepoint_on_disk(
    flink: Any, tmp_path: Path
) -> None:
    """An embedded mini-cluster exits with its job: the savepoint in the target is the answer."""
    rest, script, _ = flink
    script.statuses = [IN_PROGRESS]
    script.down_after_post = True
    written = tmp_path / "savepoint-abc"
    written.mkdir()
    (written / "_metadata").write_bytes(b"\x49\x60\x67\x2d")
    assert rest.stop_with_savepoint("j1", tmp_path, timeout=20.0) == written.as_uri()


def test_a_vanished_endpoint_without_a_savepoint_times_out(flink: Any, tmp_path: Path) -> None:
    rest, script, _ = flink
    script.statuses = [IN_PROGRESS]
    script.down_after_post = True
    with pytest.raises(ClusterError, match=r"did not complete within 2s .no savepoint in"):
        rest.stop_with_savepoint("j1", tmp_path, timeout=2.0)


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"unreachable.*--target / FLOWSHIP_TARGET"):
        FlinkRest("http://127.0.0.1:1", timeout=1.0).trigger_savepoint("j1", tmp_path)


def test_savepoints_go_to_remote_storage_unmangled(flink: Any) -> None:
    """A savepoint directory on S3 (--state-storage) reaches Flink as given, not as a path."""
    rest, script, _ = flink
    target = "s3://bucket/flowship/click-sessions/savepoints/20261130T0000Z-ab"
    done = {"status": {"id": "COMPLETED"}, "operation": {"location": target + "/savepoint-1"}}
    script.statuses = [done]
    assert rest.stop_with_savepoint("j1", target) == target + "/savepoint-1"
    assert script.requests[0][2]["targetDirectory"] == target
    script.requests.clear()
    assert rest.trigger_savepoint("j1", target) == target + "/savepoint-1"
    assert script.requests[0][2]["target-directory"] == target
    script.requests.clear()
    # a file: URI is a local directory
    rest.trigger_savepoint("j1", "file:///shared/sp")
    assert script.requests[0][2]["target-directory"] == "/shared/sp"
