"""One helper decides whether a deployment's Flink job is alive: alive, dead, or unknown.

A fake JobManager (a real HTTP server with the answers Flink 2.2's REST API gives) stands in for
the states that are hard to provoke on a real cluster; "unreachable" is a real closed port and a
real socket that never answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_jobmanager import serve

from flowship._ports import free_port
from flowship.deploy.alive import (
    ENDED,
    Verdict,
    deployment_liveness,
    liveness,
    process_alive,
    process_start,
)

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


RUNS = next(j for j, s in STATES.items() if s == "RUNNING")


@pytest.fixture
def gone_pid() -> int:
    """The pid of a process that ended and was reaped."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a child process that runs for the test (stopped and reaped after it)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_ledger_deployment_is_local_when_it_recorded_its_pid(flink: str, gone_pid: int) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    assert deployment_liveness({"rest_url": flink, "job_id": RUNS}).alive
    assert deployment_liveness({"rest_url": flink, "job_id": RUNS, "pid": gone_pid}).alive
    found = deployment_liveness({"rest_url": closed, "job_id": RUNS, "pid": gone_pid})
    assert found.dead and "process is gone" in found.seen
    assert deployment_liveness({"rest_url": closed, "job_id": RUNS}).unknown
    assert deployment_liveness({"rest_url": flink}).unknown  # no job id recorded


def test_a_refused_port_of_a_local_process_that_still_runs_is_unknown(live_pid: int) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    found = deployment_liveness({"rest_url": closed, "job_id": RUNS, "pid": live_pid})
    assert found.unknown
    assert f"its process {live_pid} runs but its REST API" in found.seen
    assert "does not answer" in found.seen
    assert liveness(closed, RUNS, pid=live_pid).unknown
    assert liveness(closed, RUNS, local=True).dead  # no pid to ask: the caller says it is gone


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_zombie_job_process_counts_as_gone() -> None:
    child = subprocess.Popen(["true"])  # ends at once; not reaped until wait(): a zombie
    try:
        deadline = time.monotonic() + 10.0
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        assert not process_alive(child.pid)
        closed = f"http://127.0.0.1:{free_port()}"
        assert deployment_liveness({"rest_url": closed, "job_id": RUNS, "pid": child.pid}).dead
    finally:
        child.wait()


def test_process_alive_tells_a_live_process_from_a_gone_one(live_pid: int, gone_pid: int) -> None:
    assert process_alive(live_pid) and process_alive(os.getpid())
    assert not process_alive(gone_pid)
    assert not process_alive(0) and not process_alive(-1)  # process groups, never a job


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_pid_given_to_another_process_since_is_not_the_jobs(live_pid: int) -> None:
    """After a reboot (or just many processes later) the recorded pid may be another process's:
    the start recorded with it tells them apart, so a dead job is not held to be running."""
    start = process_start(live_pid)
    assert start is not None and process_alive(live_pid, start)
    boot = start.split(":")[0]
    assert not process_alive(live_pid, f"{boot}:1")  # that pid started at another time
    assert not process_alive(live_pid, f"another-boot:{start.split(':')[1]}")
    closed = f"http://127.0.0.1:{free_port()}"
    reused = {"rest_url": closed, "job_id": RUNS, "pid": live_pid, "pid_start": f"{boot}:1"}
    found = deployment_liveness(reused)
    assert found.dead and "process is gone" in found.seen
    same = {"rest_url": closed, "job_id": RUNS, "pid": live_pid, "pid_start": start}
    assert deployment_liveness(same).unknown


def test_a_refused_port_of_a_job_in_this_very_process_is_dead() -> None:
    """The local target runs the job in the deployer's process: when its mini-cluster has ended
    (the job failed, say), the process that asks is the one the ledger names, and it knows."""
    closed = f"http://127.0.0.1:{free_port()}"
    found = deployment_liveness(
        {"rest_url": closed, "job_id": RUNS, "pid": os.getpid(), "pid_start": process_start()}
    )
    assert found.dead, found
