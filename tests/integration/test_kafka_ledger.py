"""The Kafka ledger on a real broker: deployers in processes of their own, different hosts.

The deployers are ``jobs/ledger/deployer.py``: the ledger calls of a deployment (take the lease,
record, act, give back) without a Flink job, so a race or a freeze is exact and fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowship.cli import main as flowship
from flowship.deploy.kafka_ledger import KafkaLedger
from flowship.deploy.ledger import Entry, LeaseHeldError, LeaseLostError, LocalLedger
from flowship.deploy.machine import Step

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

DEPLOYER = Path(__file__).parent / "jobs" / "ledger" / "deployer.py"


@pytest.fixture
def url(kafka_broker: Any) -> str:
    """A topic of this test's own on the shared broker."""
    return f"kafka://{kafka_broker.bootstrap}/ledger-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:  # stopped by pid, also when the test failed (and when frozen)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def deployer(procs: list[subprocess.Popen[str]], host: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(DEPLOYER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FLOWSHIP_HOST_ID": host},
    )
    procs.append(proc)
    return proc


def next_event(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"deployer exited ({proc.wait()}): {proc.stderr.read() if proc.stderr else ''}"
    return dict(json.loads(line))


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_entries_are_read_from_another_process_and_the_cli(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = KafkaLedger.from_url(url)
    try:
        with ledger.holding("jobx"):
            ledger.record("jobx", "d1", Step.PLANNED, version="1")
            ledger.record("jobx", "d1", Step.SUBMITTED, rest_url="http://flink:8081")
            ledger.record("jobx", "d1", Step.RUNNING, job_id="a" * 32)
        with pytest.raises(LeaseLostError):
            ledger.record("jobx", "d1", Step.STABLE)  # given back: no more lines
    finally:
        ledger.close()
    assert flowship(["history", "jobx", "--ledger", url]) == 0
    history = capsys.readouterr().out.splitlines()
    assert history == ["d1  version 1: PLANNED -> SUBMITTED -> RUNNING"]
    assert flowship(["status", "jobx", "--ledger", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"]["job_id"] == "a" * 32
    assert flowship(["status", "nope", "--ledger", url]) == 2


def test_two_deployers_on_two_hosts_race_and_exactly_one_proceeds(
    url: str, procs: list[subprocess.Popen[str]]
) -> None:
    for round_ in range(4):
        job = f"race-{round_}"
        start_at = f"{time.time() + 4:.3f}"  # both are started (imports done) by then
        a = deployer(procs, "host-a", "race", url, job, start_at)
        b = deployer(procs, "host-b", "race", url, job, start_at)
        outs = {host: p.communicate(timeout=120) for host, p in (("host-a", a), ("host-b", b))}
        codes = {"host-a": a.returncode, "host-b": b.returncode}
        assert sorted(codes.values()) == [0, 7], (codes, outs)
        winner = next(h for h, c in codes.items() if c == 0)
        loser = next(h for h, c in codes.items() if c == 7)
        stopped = events(outs[loser][0])[-1]
        assert stopped["error"] == "LeaseHeldError" and winner in stopped["message"]
        reader = KafkaLedger.from_url(url)
        try:
            entries = reader.entries(job)
        finally:
            reader.close()
        # the loser changed nothing: every line is the winner's, one deployment, in order
        assert [e.step for e in entries] == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING]
        assert {e.data["host"] for e in entries} == {winner}


def test_a_deployer_frozen_past_its_lease_is_fenced_when_resumed(
    url: str, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    touched = tmp_path / "touched-by-a"
    a = deployer(procs, "host-a", "hold", url, "frozen", "3", str(touched))
    held = next_event(a)
    assert held["event"] == "holding", held
    os.kill(a.pid, signal.SIGSTOP)  # frozen, its lease (3 s) runs out
    time.sleep(5)
    b = deployer(procs, "host-b", "take", url, "frozen")
    took = next_event(b)
    assert took["event"] == "holding", took
    os.kill(a.pid, signal.SIGCONT)  # resumed while host-b holds the lease
    assert a.stdin is not None
    a.stdin.write("go on\n")
    a.stdin.flush()
    out, err = a.communicate(timeout=120)
    assert a.returncode == 7, (out, err)
    seen = {e["event"]: e for e in events(out)}
    assert seen["record_refused"]["error"] == "LeaseLostError"
    # its own checks aside, the broker refuses its line: another producer fenced it
    assert seen["append_refused"]["error"] == "LeaseLostError"
    assert "fenced" in seen["append_refused"]["message"]
    assert "append_accepted" not in seen and "touched" not in seen
    assert not touched.exists()  # it stopped without touching the job
    assert b.stdin is not None
    b.stdin.write("done\n")
    b.stdin.flush()
    assert b.wait(timeout=60) == 0
    reader = KafkaLedger.from_url(url)
    try:
        entries = reader.entries("frozen")
    finally:
        reader.close()
    # host-a's line before it froze, host-b's after; nothing of host-a's after it was resumed
    assert [(e.data["host"], e.step) for e in entries] == [
        ("host-a", Step.PLANNED),
        ("host-b", Step.PLANNED),
    ]


def test_a_line_written_between_a_takeover_and_its_fence_is_ignored(url: str) -> None:
    # the old holder writes after another deployer's claim was accepted but before it fenced:
    # every reader ignores the line, and its writer learns it lost the lease
    old = KafkaLedger.from_url(url, host="host-a", lease_ttl=1.0)
    new = KafkaLedger.from_url(url, host="host-b")
    try:
        lease = old.acquire("window")
        old.record("window", "d1", Step.PLANNED)
        time.sleep(1.5)
        from confluent_kafka import Producer

        claim = {"kind": "claim", "job": "window", "holder": "h-b", "host": "host-b", "pid": 1,
                 "ttl": 600}
        plain = Producer({"bootstrap.servers": new.bootstrap})
        plain.produce(new.topic, key=b"window", value=json.dumps(claim).encode(), partition=0)
        assert plain.flush(30) == 0
        with pytest.raises(LeaseLostError, match="before this one's write reached"):
            old._append(Entry("window", "d1", Step.CHECKED, time.time(), {}))
        assert [e.step for e in new.entries("window")] == [Step.PLANNED]
        with pytest.raises(LeaseHeldError, match="host-b"):
            new.acquire("window")
        old.release(lease)
    finally:
        old.close()
        new.close()


def test_a_dead_holder_on_the_same_host_is_taken_over_at_once(url: str) -> None:
    code = (
        "import sys; from flowship.deploy.kafka_ledger import KafkaLedger;"
        f"KafkaLedger.from_url({url!r}, host='host-a').acquire('dead'); sys.exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    other_host = KafkaLedger.from_url(url, host="host-b")
    same_host = KafkaLedger.from_url(url, host="host-a")
    try:
        with pytest.raises(LeaseHeldError):
            other_host.acquire("dead")  # cannot see host-a's processes: trusts the expiry
        with same_host.holding("dead"):
            same_host.record("dead", "d1", Step.PLANNED)
    finally:
        other_host.close()
        same_host.close()


def test_history_moves_from_the_file_ledger_to_kafka(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = LocalLedger(tmp_path / "ledger")
    with local.holding("moved"):
        local.record("moved", "d1", Step.PLANNED, version="1")
        local.record("moved", "d1", Step.SUBMITTED, rest_url="http://flink:8081")
        local.record("moved", "d1", Step.RUNNING, job_id="b" * 32)
    before = local.entries("moved")
    args = ["ledger", "copy", "moved", "--from", str(tmp_path / "ledger"), "--to", url]
    assert flowship(args) == 0
    assert "3 entries of moved copied" in capsys.readouterr().out
    kafka = KafkaLedger.from_url(url)
    try:
        assert kafka.entries("moved") == before
        assert kafka.current("moved") == local.current("moved")
    finally:
        kafka.close()
    assert flowship(args) == 2  # never merges two histories
    assert "already records 3 entries" in capsys.readouterr().err
    assert local.entries("moved") == before
