"""Corrupted state bytes on a real mini-cluster: a clear error, not garbage values."""

from __future__ import annotations

from pathlib import Path

import events
import pytest
from helpers import produce_clicks, setup_topics, tail

from flowship.testing.jobs import run_job

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

JOB = Path(__file__).parent / "jobs" / "corrupt_state_job.py"


def test_corrupt_state_bytes_fail_the_job_with_a_clear_error(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = [e for e in events.clicks(400, users=5)]
    assert sum(e["user_id"] == "u0001" for e in evs) >= 2
    produce_clicks(bootstrap, evs)
    done = run_job(JOB, bootstrap, tmp_path / "state", "--bounded", "--restart-attempts", "0")
    assert done.returncode == 3, tail(done.stdout + done.stderr)
    err = done.stderr
    assert "state 'session' of operator uid 'session-stats', key 'u0001'" in err, tail(err)
    assert "fingerprint" in err
