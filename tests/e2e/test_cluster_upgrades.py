"""`--upgrade-from savepoint --target URL`: the same upgrades on a real Flink session cluster."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import (
    EXAMPLE,
    assert_exactly_once,
    produce_clicks_gated,
    read_outputs,
    setup_topics,
    tail,
)
from test_local_upgrades import JOB, savepoints

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.testing._proc import stop_pid

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.timeout(900)]


def deploy(script: str, cluster, bootstrap: str, state: Path, *extra: str,
           running: threading.Event | None = None, ledger: LocalLedger | None = None,
           version: str = "", env: dict[str, str] | None = None):
    """Run the deployer to its end; with ``running``, set it once ``version`` runs."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE / script), "--target", cluster.rest_url,
             "--kafka-bootstrap", bootstrap, "--state-dir", str(state), *extra],
            stdout=out, stderr=err, text=True, env=env)
        try:
            if running is not None and ledger is not None:
                wait_current(ledger, version, proc)
                running.set()
            proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                stop_pid(proc.pid, group=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def cancel_live_jobs(rest) -> None:
    """Cancel every job the session cluster still runs (or starts), also after failures."""
    for job in rest.jobs():
        if job["state"] in ("RUNNING", "RESTARTING", "CREATED", "INITIALIZING"):
            rest.cancel(job["jid"])


def wait_current(ledger: LocalLedger, version: str, proc: subprocess.Popen,
                 timeout: float = 300) -> None:
    """Until the ledger records ``version`` RUNNING (or the deployer ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        current = ledger.current(JOB)
        if current is not None and current[1].get("version") == version and \
                Step.RUNNING in [e.step for e in ledger.deployments(JOB)[current[0]]]:
            return
        time.sleep(0.5)


def test_three_upgrades_on_the_session_cluster(fresh_kafka_broker, flink_session_cluster,
                                                tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    state = tmp_path / "state"
    # checkpoints and savepoints where every TaskManager writes (a shared mount, as a file: URI;
    # s3:// and hdfs:// take the same path through flowship), not the deployer's state dir
    shared = tmp_path / "shared-storage"
    storage = ("--state-storage", shared.as_uri())
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(30_000, users=300))
    # 10,000 at 500/s (20 s) from v1's start, 10,000 once v2 runs, 10,000 once v3 runs: each
    # version gets input however long the steps before it took on a loaded machine
    v2_runs, last_version_runs = threading.Event(), threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 500.0, [10_000, 20_000],
                                      [v2_runs, last_version_runs]))
    try:
        first = deploy("job.py", flink_session_cluster, bootstrap, state, *storage)
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        producer.start()
        time.sleep(10)
        v2 = deploy("job_v2.py", flink_session_cluster, bootstrap, state, *storage,
                    "--upgrade-from", "savepoint", running=v2_runs, ledger=ledger, version="2")
        assert v2.returncode == 0, tail(v2.stdout + v2.stderr)

        running = ledger.current(JOB)
        assert running is not None and running[1]["version"] == "2"
        before = savepoints(shared)
        assert before and not savepoints(state)
        refused = deploy("job_v3_incompatible.py", flink_session_cluster, bootstrap, state,
                         *storage, "--upgrade-from", "savepoint")
        assert refused.returncode == 5, tail(refused.stdout + refused.stderr)
        assert rest.job(running[1]["job_id"])["state"] == "RUNNING"
        assert savepoints(shared) == before

        v3 = deploy("job_v3.py", flink_session_cluster, bootstrap, state, *storage,
                    "--upgrade-from", "savepoint", running=last_version_runs, ledger=ledger,
                    version="3")
        assert v3.returncode == 0, tail(v3.stdout + v3.stderr)
        producer.join(timeout=300)
        outputs = read_outputs(bootstrap, expect=30_000, timeout=240)
    finally:
        v2_runs.set()  # never leave the producer waiting
        last_version_runs.set()
        cancel_live_jobs(rest)
    version_of = {m.value["event_id"]: int(m.headers["flowship.version"])
                  for m in outputs if m.value}
    assert set(version_of.values()) == {1, 2, 3}
    assert_exactly_once(outputs, evs, expected=events.reference_versioned(evs, version_of))
    # every savepoint and checkpoint went to the storage, none to the state dir
    stops = [e.data["savepoint"] for e in ledger.entries(JOB) if e.step is Step.STOPPED]
    assert len(stops) == 2, stops
    assert all(s.removeprefix("file:").removeprefix("//").startswith(f"{shared.resolve()}/")
               for s in stops), stops
    assert list(shared.glob(f"{JOB}/checkpoints/*/chk-*"))
    assert not (state / JOB / "checkpoints").exists() and not savepoints(state)
    histories = [[e.step for e in entries] for entries in ledger.deployments(JOB).values()]
    upgrade = [Step.PLANNED, Step.CHECKED, Step.SAVEPOINTING, Step.STOPPED, Step.SUBMITTED,
               Step.RUNNING, Step.STABLE]
    assert histories == [[Step.PLANNED, Step.SUBMITTED, Step.RUNNING], upgrade,
                         [Step.PLANNED, Step.REFUSED], upgrade]
