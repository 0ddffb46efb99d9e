"""The example job submitted to a real Flink standalone session cluster."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import events
import pytest
from helpers import JOB, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail

from flowship.control import FlagClient
from flowship.errors import ConfigError
from flowship.testing._proc import pid_alive
from flowship.testing.session_cluster import SessionCluster

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(600)]


def kafka_clients(pids: list[int]) -> int:
    """How many confluent-kafka clients the processes hold (librdkafka: one main thread each)."""
    count = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                count += (task / "comm").read_text().strip() == "rdk:main"
    return count


def instances(bootstrap: str) -> set[str]:
    """The job's instances on its control topic: said hello, no goodbye yet (none: no topic)."""
    try:
        with FlagClient(bootstrap, "click-sessions") as flags:
            return set(flags.read().instances)
    except ConfigError:
        return set()


def test_job_runs_on_session_cluster(kafka_broker, flink_session_cluster, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(3_000, users=100))
    produce_clicks(bootstrap, evs)
    taskmanagers = flink_session_cluster.taskmanager_pids()
    clients_before = kafka_clients(taskmanagers)
    # other tests share the broker: an instance whose process they killed never said goodbye
    others = instances(bootstrap)

    done = subprocess.run(
        [sys.executable, str(JOB), "--target", flink_session_cluster.rest_url,
         "--kafka-bootstrap", bootstrap, "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    job_id = done.stdout.strip().split()[-1]
    rest = flink_session_cluster.rest
    try:
        deadline = time.monotonic() + 60
        while rest.job(job_id)["state"] != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.5)
        details = rest.job(job_id)
        assert details["state"] == "RUNNING"
        assert details["name"] == "click-sessions@1"
        assert_exactly_once(read_outputs(bootstrap, expect=3_000), evs)
        mine = instances(bootstrap) - others
        assert kafka_clients(taskmanagers) > clients_before  # its control agents' clients
    finally:
        rest.cancel(job_id)
    deadline = time.monotonic() + 60
    while rest.job(job_id)["state"] != "CANCELED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rest.job(job_id)["state"] == "CANCELED"
    # a cancelled job's operators are dropped without close(): its control agents still say
    # goodbye (no flag setter waits for them) and its Kafka clients do not outlive it in the
    # TaskManager, which runs on (before: both lived, beating, as long as the TaskManager)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        instances(bootstrap) & mine or kafka_clients(taskmanagers) > clients_before
    ):
        time.sleep(0.5)
    assert mine and not instances(bootstrap) & mine
    assert kafka_clients(taskmanagers) == clients_before


def test_session_cluster_is_stopped_by_pid(tmp_path: Path) -> None:
    cluster = SessionCluster(tmp_path / "flink", slots=1, tm_memory="1024m").start()
    try:
        pids = cluster.pids()
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        assert cluster.rest.overview()["taskmanagers"] == 1
    finally:
        cluster.stop()
    assert not any(pid_alive(p) for p in pids)


def test_unreachable_cluster_gives_clear_error(tmp_path: Path) -> None:
    from flowship.testing._proc import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, str(JOB), "--target", url, "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 4
    assert f"Flink REST API at {url} is unreachable" in done.stderr
