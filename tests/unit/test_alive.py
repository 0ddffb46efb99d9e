"""One helper decides whether a deployment's Flink job is alive: alive, dead, or unknown.

A fake JobManager (a real HTTP server with the answers Flink 2.2's REST API gives) stands in for
the states that are hard to provoke on a real cluster; "unreachable" is a real closed port and a
real socket that never answers.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flowship._ports import free_port
from flowship.deploy.alive import ENDED, Verdict, deployment_liveness, liveness

STATES = {
    f"{i:032x}": state
    for i, state in enumerate(
        [
            "RUNNING",
            "RESTARTING",
            "CREATED",
            "INITIALIZING",
            "FAILING",
            "CANCELLING",
            "SUSPENDED",
            "RECONCILING",
            "FINISHED",
            "CANCELED",
            "FAILED",
        ]
    )
}
BROKEN = "f" * 32  # the JobManager answers 500 for this one


@pytest.fixture(scope="module")
def flink() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            job_id = self.path.rsplit("/", 1)[-1]
            if job_id == BROKEN:
                code, body = 500, {"errors": ["Internal server error."]}
            elif job_id in STATES:
                code, body = 200, {"jid": job_id, "state": STATES[job_id], "vertices": []}
            else:
                code, body = 404, {"errors": ["Job could not be found."]}
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


@pytest.mark.parametrize("job_id", sorted(STATES), ids=lambda j: STATES[j])
def test_every_state_but_the_terminal_ones_is_alive(flink: str, job_id: str) -> None:
    state = STATES[job_id]
    for local in (False, True):
        found = liveness(flink, job_id, local=local)
        assert found.seen == state
        assert found.verdict is (Verdict.DEAD if state in ENDED else Verdict.ALIVE)
        assert found.alive == (state not in ENDED) and found.dead == (state in ENDED)


def test_a_job_the_cluster_does_not_know_is_dead(flink: str) -> None:
    found = liveness(flink, "e" * 32)
    assert found.dead and "not known" in found.seen


def test_an_error_answer_is_unknown_never_dead(flink: str) -> None:
    for local in (False, True):
        found = liveness(flink, BROKEN, local=local)
        assert found.unknown and "500" in found.seen


def test_an_unreachable_cluster_is_unknown_but_a_gone_local_process_is_dead() -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens
    remote = liveness(closed, "0" * 32)
    assert remote.unknown and "unreachable" in remote.seen
    assert liveness(closed, "0" * 32, local=True).dead


def test_a_rest_api_that_does_not_answer_is_unknown_also_locally() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert liveness(url, "0" * 32, local=True, timeout=0.5).unknown
        assert liveness(url, "0" * 32, timeout=0.5).unknown


def test_a_ledger_deployment_is_local_when_it_recorded_its_pid(flink: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    running = next(j for j, s in STATES.items() if s == "RUNNING")
    assert deployment_liveness({"rest_url": flink, "job_id": running}).alive
    assert deployment_liveness({"rest_url": closed, "job_id": running, "pid": 4242}).dead
    assert deployment_liveness({"rest_url": closed, "job_id": running}).unknown
    assert deployment_liveness({"rest_url": flink}).unknown  # no job id recorded
