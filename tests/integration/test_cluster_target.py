"""The example job submitted to a real Flink standalone session cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import events
import pytest
from helpers import JOB, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail

from flowship.testing._proc import pid_alive
from flowship.testing.session_cluster import SessionCluster

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(600)]


def test_job_runs_on_session_cluster(kafka_broker, flink_session_cluster, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(3_000, users=100))
    produce_clicks(bootstrap, evs)

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
    finally:
        rest.cancel(job_id)
    deadline = time.monotonic() + 60
    while rest.job(job_id)["state"] != "CANCELED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rest.job(job_id)["state"] == "CANCELED"


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
