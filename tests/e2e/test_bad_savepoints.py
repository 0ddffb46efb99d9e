"""`--upgrade-from PATH` with a damaged savepoint, on the real mini-cluster: a clear error, the
ledger says FAILED (or nothing at all), nothing else changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE, setup_topics, tail
from test_local_upgrades import JOB

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.testing._proc import free_port

pytestmark = [pytest.mark.timeout(300)]

MAGIC_AND_VERSION = bytes.fromhex("4960672d00000006")  # what Flink 2.2 writes first


def _run(state: Path, savepoint: Path, bootstrap: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    # restoring the savepoint fails before any source connects; a broker (with the source
    # topic) is needed by what a deployment does first: its Kafka check, the control plane's
    # topics
    return subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "job.py"),
            "--upgrade-from",
            str(savepoint),
            "--state-dir",
            str(state),
            "--rest-port",
            str(free_port()),
            "--kafka-bootstrap",
            bootstrap or f"127.0.0.1:{free_port()}",
            "--restart-attempts",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _savepoint(tmp_path: Path, body: bytes) -> Path:
    sp = tmp_path / "savepoint-bad"
    sp.mkdir()
    (sp / "_metadata").write_bytes(body)
    return sp


def test_metadata_that_is_not_flinks_is_refused_before_anything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sp = _savepoint(tmp_path, b'{"not": "a savepoint"}')
    done = _run(state, sp)
    assert done.returncode == 2, tail(done.stdout + done.stderr)
    assert "is not a Flink savepoint or checkpoint" in done.stderr
    assert "nothing was started" in done.stderr
    assert not state.exists()  # no ledger, no checkpoint directory: nothing recorded


def test_garbage_after_the_magic_number_fails_the_job_and_is_recorded(
    kafka_broker, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    sp = _savepoint(tmp_path, MAGIC_AND_VERSION + bytes(range(256)) * 8)
    metadata = (sp / "_metadata").read_bytes()
    setup_topics(kafka_broker.bootstrap)
    done = _run(state, sp, kafka_broker.bootstrap)
    assert done.returncode == 3, tail(done.stdout + done.stderr)
    assert f"while restoring from {sp.resolve().as_uri()}" in done.stderr, tail(done.stderr)
    assert "corrupt or incomplete" in done.stderr
    ledger = LocalLedger(state / "ledger")
    (entries,) = ledger.deployments(JOB).values()
    assert [e.step for e in entries] == [Step.PLANNED, Step.SUBMITTED, Step.FAILED]
    assert "while restoring from" in entries[-1].data["reason"]
    assert ledger.current(JOB) is None  # nothing counts as running
    assert not (state / "ledger" / f"{JOB}.lease").exists()
    assert (sp / "_metadata").read_bytes() == metadata  # the savepoint was left as it was
    assert not list(state.rglob("savepoint-*"))
