"""Stateless jobs (``fs.Job(..., stateless=True)``): upgrades may reshape the whole graph."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import events
import pytest
from helpers import CLICK, produce_clicks, tail

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.testing.jobs import JobProcess
from flowship.testing.kafka_io import create_topics, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

JOBS = Path(__file__).parent / "jobs"
JOB = "click-copies"


def wait_for(ledger: LocalLedger, version: str, step: Step, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = ledger.current(JOB) if ledger.root.exists() else None
        if current is not None and current[1].get("version") == version:
            if step in [e.step for e in ledger.deployments(JOB)[current[0]]]:
                return
        time.sleep(0.5)
    raise AssertionError(f"{JOB} version {version} did not reach {step} in {timeout}s")


def test_stateless_upgrade_reshapes_the_graph_exactly_once(fresh_kafka_broker,
                                                          tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, {"clicks": 4, "click-copies": 4, "clicks.dlq": 1})
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    evs = list(events.clicks(3_000, users=50))
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, evs, 200.0))  # 15 s
    v1 = JobProcess(JOBS / "stateless_v1.py", bootstrap, state).start()
    v2 = JobProcess(JOBS / "stateless_v2.py", bootstrap, state, "--upgrade-from", "savepoint")
    v2.log = state / "v2.log"
    try:
        wait_for(ledger, "1", Step.RUNNING)
        producer.start()
        time.sleep(6)
        # v2 renames the sink's uid and adds an operator: without stateless=True, Flink would
        # refuse the savepoint (the old sink's transaction state has nowhere to go)
        v2.start()
        wait_for(ledger, "2", Step.STABLE)
        assert v1.wait(timeout=60) == 0, tail(v1.output())
        producer.join(timeout=120)
        outputs = read_topic(bootstrap, "click-copies", schema=CLICK, expect=len(evs),
                             timeout=120, idle=4.0)
        assert v2.running(), tail(v2.output())
    finally:
        v2.stop()
        v1.stop()
    counts = collections.Counter(m.value["event_id"] for m in outputs if m.value)
    assert len(counts) == len(evs), f"lost {len(evs) - len(counts)} events"
    assert max(counts.values()) == 1, "an event was copied twice"
    versions = collections.Counter(m.headers["flowship.version"] for m in outputs)
    assert set(versions) == {"1", "2"}, versions
    by_id = {e["event_id"]: e for e in evs}
    for m in outputs:
        assert m.value is not None
        page = by_id[m.value["event_id"]]["page"].strip()
        expected = page if m.headers["flowship.version"] == "1" else page.lower()
        assert m.value["page"] == expected
