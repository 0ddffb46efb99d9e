"""A real job deployed, upgraded and rolled back with the Kafka ledger (`--ledger kafka://`)."""

from __future__ import annotations

import json
import os
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
from test_local_upgrades import wait_step

from flowship.cli import main as flowship
from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.testing._proc import pid_alive, stop_pid
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

JOB = "click-sessions"


def wait_running(ledger: KafkaLedger, version: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = ledger.current(JOB)
        if current is not None and current[1].get("version") == version:
            data = current[1]
            if FlinkRest(data["rest_url"]).job(data["job_id"])["state"] == "RUNNING":
                return data
        time.sleep(0.5)
    raise AssertionError(f"version {version} not RUNNING in {timeout}s")


def test_broken_version_is_rolled_back_with_the_kafka_ledger(
    fresh_kafka_broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    url = f"kafka://{bootstrap}"
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = KafkaLedger.from_url(url)
    evs = list(events.clicks(6_000, users=200))
    # the broken version fails only on input for a key with restored state: the second half of
    # the input waits until it runs (when all of it came before, v2 was judged STABLE on the few
    # records v1 left unread)
    v2_runs = threading.Event()
    producer = threading.Thread(target=produce_clicks_gated,
                                args=(bootstrap, evs, 300.0, 3_000, v2_runs))
    broken = Path(__file__).parent / "jobs" / "broken_v2.py"
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state, "--ledger", url).start()
    procs = [v1]
    rollback_pid = None
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(5)
        v2 = JobProcess(broken, bootstrap, state, "--upgrade-from", "savepoint",
                        "--health-window-s", "45", "--ledger", url).start()
        procs.append(v2)
        wait_step(ledger, "2-broken", Step.RUNNING, v2)
        v2_runs.set()
        assert v2.wait(timeout=400) == 6, tail(v2.output())
        assert "rolled back to version 1" in v2.output()
        assert v1.wait(timeout=60) == 0
        rollback_pid = wait_running(ledger, "1")["pid"]
        failed = list(ledger.deployments(JOB).values())[-2]
        assert [e.step for e in failed][-4:] == [Step.RUNNING, Step.FAILED, Step.ROLLING_BACK,
                                                 Step.ROLLED_BACK]
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=6_000, timeout=240)
    finally:
        v2_runs.set()  # never leave the producer waiting
        for p in procs:
            p.stop()
        for entry in ledger.entries(JOB):
            pid = entry.data.get("pid")
            if pid and pid != os.getpid() and pid_alive(pid):
                stop_pid(pid)
        ledger.close()
    assert rollback_pid is not None
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, evs)
    # everything is in the topic, nothing in the directory ledger; any host reads it
    assert not list(state.rglob("*.jsonl"))
    assert flowship(["status", JOB, "--ledger", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"]["version"] == "1"
