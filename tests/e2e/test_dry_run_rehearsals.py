"""`python job.py --dry-run --upgrade-from savepoint`: real broker, real Flink, nothing changed.

One production (version 1 of the example on the local target) serves the module's tests, in
order: an incompatible version is refused (exit 5), a version whose migrate function breaks on
some stored values fails with uid/state/key (exit 8) while input is quiet (so production's
consumer group offsets can be compared exactly), and version 2 passes under continuous input,
after which production still produced every output exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import events
import pytest
from confluent_kafka import Consumer, TopicPartition
from helpers import EXAMPLE, assert_exactly_once, produce_clicks, read_outputs, setup_topics, tail
from test_cluster_upgrades import cancel_live_jobs

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.rest import FlinkRest
from flowship.testing.jobs import JobProcess, job_command
from flowship.testing.kafka_broker import KafkaBroker
from flowship.testing.kafka_io import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.jvm, pytest.mark.timeout(900)]

JOB = "click-sessions"
GROUP = f"flowship.{JOB}.clicks-source"
BAD_MIGRATION = Path(__file__).parent / "jobs" / "bad_migration_v2.py"
USERS = 40
EVENTS = list(events.clicks(6000, users=USERS))
FIRST, SECOND = EVENTS[:3000], EVENTS[3000:]


@dataclass
class Production:
    bootstrap: str
    state: Path
    ledger: LocalLedger
    v1: JobProcess
    rest: FlinkRest
    job_id: str

    def ledger_bytes(self) -> bytes:
        return (self.ledger.root / f"{JOB}.jsonl").read_bytes()

    def dry_run(self, script: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            job_command(script, self.bootstrap, self.state, "--dry-run", "--json", *extra),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def assert_untouched(self, before: bytes) -> None:
        assert self.rest.job(self.job_id)["state"] == "RUNNING"
        assert self.ledger_bytes() == before
        assert not (self.ledger.root / f"{JOB}.lease").exists()
        history = self.rest.exceptions(self.job_id).get("exceptionHistory", {})
        assert history.get("entries", []) == [], "production failed or restarted"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    base = tmp_path_factory.mktemp("dry-run")
    broker = KafkaBroker(base / "kafka")
    v1 = None
    try:
        broker.start()
        setup_topics(broker.bootstrap)
        produce_clicks(broker.bootstrap, FIRST)
        state = base / "state"
        ledger = LocalLedger(state / "ledger")
        v1 = JobProcess(EXAMPLE / "job.py", broker.bootstrap, state).start()
        deadline = time.monotonic() + 180
        current = None
        while time.monotonic() < deadline and current is None:
            current = ledger.current(JOB)
            time.sleep(0.5)
        assert current is not None, tail(v1.output())
        read_outputs(broker.bootstrap, expect=len(FIRST), timeout=180)
        yield Production(
            broker.bootstrap,
            state,
            ledger,
            v1,
            FlinkRest(current[1]["rest_url"]),
            current[1]["job_id"],
        )
    finally:
        if v1 is not None:
            v1.stop()
        broker.stop()


def committed(bootstrap: str, group: str) -> dict[int, int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        parts = [TopicPartition("clicks", p) for p in range(4)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    start = done.stdout.index("{")
    return json.loads(done.stdout[start:])


def wait_committed_stable(bootstrap: str, group: str) -> dict[int, int]:
    """Production's committed offsets once they stop moving (its input is quiet)."""
    last: dict[int, int] = {}
    for _ in range(30):
        now = committed(bootstrap, group)
        if now == last and all(o >= 0 for o in now.values()):
            return now
        last = now
        time.sleep(2.5)
    return last


def test_incompatible_version_is_refused_and_nothing_changes(production: Production) -> None:
    before = production.ledger_bytes()
    done = production.dry_run(EXAMPLE / "job_v3_incompatible.py", "--upgrade-from", "savepoint")
    assert done.returncode == 5, tail(done.stdout + done.stderr)
    report = report_of(done)
    assert report["gate"]["compatible"] is False
    assert "unknown_writer_version" in done.stdout
    assert report["state_from"] == ""  # no savepoint was taken
    assert not list(production.state.glob(f"{JOB}/dry-runs/*/savepoint"))
    production.assert_untouched(before)


def test_unreadable_state_is_reported_with_uid_state_and_key(production: Production) -> None:
    offsets = wait_committed_stable(production.bootstrap, GROUP)
    outputs_before = len(read_outputs(production.bootstrap, expect=len(FIRST), timeout=60))
    before = production.ledger_bytes()
    done = production.dry_run(BAD_MIGRATION, "--upgrade-from", "savepoint")
    assert done.returncode == 8, tail(done.stdout + done.stderr)
    report = report_of(done)
    assert report["gate"]["compatible"] is True
    (op,) = report["operators"]
    (state,) = op["states"]
    assert (op["uid"], state["state"], op["key_type"]) == ("session-stats", "session", "string")
    assert state["keys"] == USERS
    assert 0 < state["failed"] < USERS
    failure = state["failures"][0]
    assert failure["key"].startswith("u00")
    assert "migrations[2] failed" in failure["error"]
    assert "session-stats" in failure["error"] and failure["key"] in failure["error"]
    assert report["passed"] is False
    # quiet input: the rehearsal's sample is empty and touches no key, so it passes; only
    # reading every key of the savepoint finds the bug
    assert report["rehearsal"]["passed"] is True, report["rehearsal"]
    assert report["rehearsal"]["records_in"] == 0
    assert report["rehearsal"]["truncated"] is False  # it ended at the sample's end
    # nothing production uses moved: its group's offsets, its output topic, ledger, job
    assert committed(production.bootstrap, GROUP) == offsets
    assert (
        len(read_outputs(production.bootstrap, expect=outputs_before, timeout=60)) == outputs_before
    )
    production.assert_untouched(before)


def test_compatible_version_passes_under_continuous_input(production: Production) -> None:
    before = production.ledger_bytes()
    producer = threading.Thread(
        target=produce_clicks, args=(production.bootstrap, SECOND, 150.0)
    )  # 20 s
    producer.start()
    try:
        time.sleep(3)
        done = production.dry_run(EXAMPLE / "job_v2.py", "--upgrade-from", "savepoint")
    finally:
        producer.join(timeout=120)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    report = report_of(done)
    assert report["passed"] is True and report["gate"]["compatible"] is True
    assert report["state_source"] == "savepoint"
    assert f"/{JOB}/dry-runs/{report['token']}/savepoint/" in report["state_from"]
    (op,) = report["operators"]
    (state,) = op["states"]
    assert state["keys"] == USERS and state["values"] == USERS and state["failed"] == 0
    assert state["migrated"] == USERS  # every value was written by version 1
    assert list(state["writers"]) == [next(iter(state["writers"]))]
    assert next(iter(state["writers"])).startswith("v1 ")
    rehearsal = report["rehearsal"]
    suffix = f".dryrun-{report['token']}"
    assert rehearsal["passed"] is True
    assert rehearsal["truncated"] is False  # stopped at the sample's end, not the time limit
    assert rehearsal["records_in"] > 0
    assert set(rehearsal["outputs"]) == {f"session-stats{suffix}"}
    assert set(rehearsal["dead_letters"]) == {f"clicks.dlq{suffix}"}
    assert rehearsal["dead_letters"][f"clicks.dlq{suffix}"] == 0
    sample = rehearsal["outputs"][f"session-stats{suffix}"]
    assert sample > 0, "the rehearsal read no input: continuous input should give it a sample"
    rehearsed = read_topic(production.bootstrap, f"session-stats{suffix}", timeout=30)
    assert len(rehearsed) == sample
    assert {m.headers["flowship.version"] for m in rehearsed} == {"2"}
    # compared with production's outputs for the same input records (paired by the input
    # address each output names): version 2 adds previous_page, every other field is version 1's
    (diff,) = report["diffs"]
    assert (diff["production"], diff["candidate"]) == ("session-stats", f"session-stats{suffix}")
    assert diff["note"] == "", diff["note"]  # production had committed the whole sample
    assert diff["compared"] == diff["different"] == sample, diff
    assert diff["fields"] == {"previous_page": sample}
    assert diff["only_production"] == diff["only_candidate"] == 0
    example = diff["examples"][0]
    assert example["production"][0]["value"]["previous_page"] is None
    assert isinstance(example["candidate"][0]["value"]["previous_page"], str)
    production.assert_untouched(before)
    # production carried on alone: every event exactly once, all by version 1, no extra records
    outputs = read_outputs(production.bootstrap, expect=len(EVENTS), timeout=240)
    assert {m.headers["flowship.version"] for m in outputs} == {"1"}
    assert_exactly_once(outputs, EVENTS)
    production.assert_untouched(before)
    # its consumer group is its own: committed up to the end of the input, by production
    assert sum(wait_committed_stable(production.bootstrap, GROUP).values()) == len(EVENTS)


def test_latest_checkpoint_of_a_live_job_is_refused_and_a_path_is_rehearsed(
    production: Production,
) -> None:
    before = production.ledger_bytes()
    done = production.dry_run(EXAMPLE / "job_v2.py", "--upgrade-from", "latest-checkpoint")
    assert done.returncode == 2, tail(done.stdout + done.stderr)
    assert "is alive" in done.stderr and "--upgrade-from savepoint" in done.stderr
    production.assert_untouched(before)

    # an older savepoint (an earlier dry run's): its sample is everything produced since
    savepoint = sorted(production.state.glob(f"{JOB}/dry-runs/*/savepoint/savepoint-*"))[0]
    done = production.dry_run(EXAMPLE / "job_v2.py", "--upgrade-from", str(savepoint))
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    report = report_of(done)
    assert report["state_source"] == "path" and report["passed"] is True
    assert report["diffs"] == []
    assert "did not start from a savepoint taken now" in report["diff_skipped"]
    assert report["operators"][0]["states"][0]["keys"] == USERS
    (outputs,) = report["rehearsal"]["outputs"].values()
    assert outputs == report["rehearsal"]["records_in"] > 0
    production.assert_untouched(before)


@pytest.mark.cluster
def test_dry_run_against_a_session_cluster_deployment(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    setup_topics(bootstrap)
    produce_clicks(bootstrap, FIRST)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    flags = [
        "--target",
        flink_session_cluster.rest_url,
        "--kafka-bootstrap",
        bootstrap,
        "--state-dir",
        str(state),
    ]
    try:
        first = subprocess.run(
            [sys.executable, str(EXAMPLE / "job.py"), *flags],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        read_outputs(bootstrap, expect=len(FIRST), timeout=180)
        current = ledger.current(JOB)
        assert current is not None
        before = (ledger.root / f"{JOB}.jsonl").read_bytes()
        done = subprocess.run(
            [sys.executable, str(EXAMPLE / "job_v2.py"), *flags, "--dry-run", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        report = report_of(done)
        assert report["passed"] and report["state_source"] == "savepoint"
        assert report["operators"][0]["states"][0]["keys"] == USERS
        assert rest.job(current[1]["job_id"])["state"] == "RUNNING"
        assert (ledger.root / f"{JOB}.jsonl").read_bytes() == before
        assert not (ledger.root / f"{JOB}.lease").exists()
    finally:
        cancel_live_jobs(rest)


def test_value_map_and_list_state_are_read_for_every_key(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    setup_topics(bootstrap)
    evs = FIRST[:1000]
    produce_clicks(bootstrap, evs)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    script = Path(__file__).parent / "jobs" / "multi_state.py"
    job = JobProcess(script, bootstrap, state).start()
    try:
        read_outputs(bootstrap, expect=len(evs), timeout=180)
        current = ledger.current("multi-state")
        assert current is not None
        done = subprocess.run(
            job_command(script, bootstrap, state, "--dry-run", "--json"),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        report = report_of(done)
        (op,) = report["operators"]
        states = {s["state"]: s for s in op["states"]}
        users = {e["user_id"] for e in evs}
        pages = {(e["user_id"], e["page"]) for e in evs}
        assert {k: (s["kind"], s["keys"], s["failed"]) for k, s in states.items()} == {
            "session": ("value", len(users), 0),
            "pages": ("map", len(users), 0),
            "recent": ("list", len(users), 0),
        }
        assert states["pages"]["values"] == len(pages)  # one value per (user, page) entry
        assert states["recent"]["values"] == sum(
            min(3, sum(e["user_id"] == u for e in evs)) for u in users
        )
        assert FlinkRest(current[1]["rest_url"]).job(current[1]["job_id"])["state"] == "RUNNING"
    finally:
        job.stop()
