"""One helper decides whether a deployment's Flink job is alive: alive, dead, or unknown.

A fake JobManager (a real HTTP server with the answers Flink 2.2's REST API gives) stands in for
the states that are hard to provoke on a real cluster; "unreachable" is a real closed port and a
real socket that never answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fake_jobmanager import serve

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
    with serve(STATES, BROKEN) as url:
        yield url


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
