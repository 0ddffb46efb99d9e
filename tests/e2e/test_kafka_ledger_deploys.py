"""A real job deployed, upgraded and rolled back with the Kafka ledger (`--ledger kafka://`)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail

from flowship.cli import main as flowship
from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.machine import Step
from flowship.deploy.rest import FlinkRest
from flowship.testing._proc import pid_alive, stop_pid
from flowship.testing.jobs import JobProcess, job_command

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
    evs = list(events.clicks(8_000, users=200))
    # 80 s: the broken version fails only on input for a key with restored state, so input must
    # still arrive once it runs (at 400/s it was all read by v1 before the savepoint under load,
    # and v2 was judged STABLE on the 19 records left)
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 100.0))
    broken = Path(__file__).parent / "jobs" / "broken_v2.py"
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state, "--ledger", url).start()
    rollback_pid = None
    try:
        wait_running(ledger, "1")
        producer.start()
        time.sleep(5)
        v2 = subprocess.run(
            job_command(broken, bootstrap, state, "--upgrade-from", "savepoint",
                        "--health-window-s", "45", "--ledger", url),
            capture_output=True, text=True, timeout=400, check=False)
        assert v2.returncode == 6, tail(v2.stdout + v2.stderr)
        assert "rolled back to version 1" in v2.stderr
        assert v1.wait(timeout=60) == 0
        rollback_pid = wait_running(ledger, "1")["pid"]
        failed = list(ledger.deployments(JOB).values())[-2]
        assert [e.step for e in failed][-4:] == [Step.RUNNING, Step.FAILED, Step.ROLLING_BACK,
                                                 Step.ROLLED_BACK]
        producer.join(timeout=120)
        outputs = read_outputs(bootstrap, expect=8_000, timeout=240)
    finally:
        v1.stop()
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
