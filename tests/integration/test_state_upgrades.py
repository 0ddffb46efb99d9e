"""Versioned Avro state across real savepoints: v1 -> v2 (additive) -> v3 (migrated)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail

from flowship.deploy.rest import FlinkRest
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]


def _running_job_id(rest: FlinkRest, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = [j["jid"] for j in rest.jobs() if j["state"] == "RUNNING"]
        except Exception:  # REST not up yet
            running = []
        if running:
            return running[0]
        time.sleep(0.5)
    raise AssertionError(f"no RUNNING job at {rest.url}")


def _run_until_stopped(script: Path, bootstrap: str, state: Path, expect: int,
                       *extra: str) -> str:
    """Run ``script`` until ``expect`` outputs are committed, stop it with a savepoint."""
    with JobProcess(script, bootstrap, state, *extra) as job:
        rest = FlinkRest(job.rest_url)
        job_id = _running_job_id(rest)
        outputs = read_outputs(bootstrap, expect=expect, timeout=240)
        assert len(outputs) >= expect, tail(job.output())
        savepoint = rest.stop_with_savepoint(job_id, state / f"savepoints-{script.stem}")
        assert job.wait(timeout=60) == 0, tail(job.output())
    assert "job.finished" in job.output()
    return savepoint.removeprefix("file://").removeprefix("file:")


def test_v1_v2_v3_upgrades_through_savepoints(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = list(events.clicks(6_000, users=150))
    batches = [evs[:2_000], evs[2_000:4_000], evs[4_000:]]
    state = tmp_path / "state"

    produce_clicks(bootstrap, batches[0])
    sp1 = _run_until_stopped(EXAMPLE / "job.py", bootstrap, state, 2_000)
    assert (Path(sp1) / "_metadata").is_file()

    produce_clicks(bootstrap, batches[1])
    sp2 = _run_until_stopped(EXAMPLE / "job_v2.py", bootstrap, state, 4_000,
                             "--upgrade-from", sp1)

    produce_clicks(bootstrap, batches[2])
    _run_until_stopped(EXAMPLE / "job_v3.py", bootstrap, state, 6_000, "--upgrade-from", sp2)

    outputs = read_outputs(bootstrap, expect=6_000)
    # one output per input across three versions and two savepoints: offsets were restored
    assert_exactly_once(outputs, evs, expected=events.reference_staged(batches))
    versions = {m.headers["flowship.version"] for m in outputs}
    assert versions == {"1", "2", "3"}


def test_missing_savepoint_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "job_v2.py"), "--upgrade-from", str(tmp_path / "nope"),
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    assert "no savepoint or checkpoint there" in done.stderr
