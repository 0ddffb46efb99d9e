"""Feature flags and output routing decided by input offset, on a real broker and mini-cluster.

Each output of ``jobs/flags/job.py`` says which branch its input took for each flag, and where
the input was (topic/partition/offset). The test predicts every branch on its own, from the
produced events and the cuts ``flowship flag set`` printed, and finds zero mismatches.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import tail

from flowship.schema import AvroCodec
from flowship.testing.jobs import JobProcess
from flowship.testing.kafka_io import Message, create_topics, produce, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

HERE = Path(__file__).parent / "jobs" / "flags"
JOB = HERE / "job.py"
TOPICS = {"flag-events": 6, "flag-decisions": 6, "flag-events.dlq": 1}
TENANTS = ["a", "b", "c", "d", "e"]


def events(count: int, start: int = 0, users: int = 300) -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i:07d}", "user_id": f"u{(i * 7919) % users:04d}",
         "tenant": TENANTS[(i * 31) % len(TENANTS)]}
        for i in range(start, start + count)
    ]


def produce_events(bootstrap: str, evs: list[dict[str, Any]], rate: float = 0.0) -> None:
    codec = AvroCodec(HERE / "event.avsc")
    produce(bootstrap, "flag-events", [(e["user_id"].encode(), codec.encode(e)) for e in evs],
            rate=rate)


def flowship(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowship.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def flag_set(bootstrap: str, flag: str, *rules: str) -> dict[str, Any]:
    done = flowship("flag", "set", "flag-test", flag, *rules, "--kafka-bootstrap", bootstrap,
                    "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


# -- the independent prediction ------------------------------------------------------------------

def bucket(flag: str, key: bytes) -> float:
    """LaunchDarkly's bucketing, written again here from its definition."""
    digest = hashlib.sha1(flag.encode() + b"." + key).hexdigest()
    return int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF * 100.0


def matches(rule: str, flag: str, event: dict[str, Any], partition: int, key_field: str | None,
            ) -> bool:
    kind, _, args = rule.partition("=")
    if kind == "all":
        return True
    if kind == "partitions":
        return partition in {int(a) for a in args.split(",")}
    if kind == "percent":
        target = (event[key_field] if key_field else event["user_id"]).encode()
        return bucket(flag, target) < float(args)
    if kind.startswith("field."):
        return str(event[kind[len("field."):]]) in args.split(",")
    raise AssertionError(rule)


def predict(changes: list[dict[str, Any]], flag: str, default: Any, values: dict[str, Any],
            event: dict[str, Any], partition: int, offset: int,
            key_field: str | None = None) -> Any:
    """The value of ``flag`` for the event at ``partition``/``offset`` after ``changes``."""
    rules = None
    for change in changes:  # in commit order: the last whose cut is at or below the offset
        if change["flag"] == flag and change["cuts"]["flag-events"][str(partition)] <= offset:
            rules = change["rules"]
    if rules is None or rules == "none":
        return default
    for text in rules.split():
        head, _, variant = text.rpartition(":")
        if head == "default":
            return values[variant]
        if matches(head, flag, event, partition, key_field):
            return values[variant]
    return default


BOOL = {"on": True, "off": False}
ROUTE = {"production": "production", "side": "side"}
SIDE = "flag-decisions.side.1"  # each version has its own side topic
SIDE_V2 = "flag-decisions.side.2"
TIER = {"basic": "basic", "gold": "gold"}


def _read_all(bootstrap: str) -> list[Message]:
    topics = [t for t in ("flag-decisions", SIDE, SIDE_V2)
              if t == "flag-decisions" or _exists(bootstrap, t)]
    return [m for t in topics
            for m in read_topic(bootstrap, t, schema=HERE / "decision.avsc", expect=None,
                                timeout=60, idle=3 if t == "flag-decisions" else 2)]


def _exists(bootstrap: str, topic: str) -> bool:
    from confluent_kafka.admin import AdminClient

    return topic in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics


def read_both(bootstrap: str, expect: int, timeout: float = 240.0) -> list[Message]:
    """Outputs in production and on the side topics (read_committed), once ``expect`` inputs
    have an output (or at ``timeout``: the caller's checks then say what is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        inputs = {m.value["event_id"] for m in _read_all(bootstrap)
                  if m.value and m.value["source"] != "timer"}
        if len(inputs) >= expect or time.monotonic() > deadline:
            time.sleep(3)  # then read once more: duplicates would show now
            return _read_all(bootstrap)
        time.sleep(2)


def check_outputs(outputs: list[Message], evs: dict[str, dict[str, Any]],
                  changes: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"pricing": 0, "tier": 0, "beta": 0}
    mismatches = []
    regular = {(m.value["user_id"], m.value["count"]): m for m in outputs
               if m.value and m.value["source"] != "timer"}
    timers = 0
    for m in outputs:
        assert m.value is not None
        v2 = m.headers.get("flowship.version") == "2"  # version 2 declares no "beta"
        if m.value["source"] == "timer":
            # a timer's output takes the branches of its key's last input record (the one that
            # left the count the timer saw), routing included
            twin = regular[(m.value["user_id"], m.value["count"])]
            fields = ("pricing", "tier", "beta")
            got = ({k: m.value[k] for k in fields}, m.topic in (SIDE, SIDE_V2))
            want = ({k: twin.value[k] for k in fields}, twin.topic in (SIDE, SIDE_V2))
            if v2:
                want[0]["beta"] = False
            if got != want:
                mismatches.append((m.value["event_id"], got, want))
            timers += 1
            continue
        event = evs[m.value["event_id"]]
        _, partition, offset = m.value["source"].rsplit("/", 2)
        p, o = int(partition), int(offset)
        want = {
            "pricing": predict(changes, "new-pricing", False, BOOL, event, p, o),
            "tier": predict(changes, "tier", "basic", TIER, event, p, o),
            "beta": False if v2 else predict(changes, "beta", False, BOOL, event, p, o,
                                             key_field="tenant"),
        }
        want["route"] = predict(changes, "flowship.route", "production", ROUTE, event, p, o)
        got = {k: m.value[k] for k in want if k != "route"}
        got["route"] = "side" if m.topic in (SIDE, SIDE_V2) else "production"
        if got != want:
            mismatches.append((m.value["source"], got, want))
        for name, value in got.items():
            counts[name] = counts.get(name, 0) + (value not in (False, "basic", "production"))
    assert not mismatches, f"{len(mismatches)} outputs took another branch, e.g. {mismatches[:3]}"
    counts["timers"] = timers
    return counts


def assert_once(outputs: list[Message], evs: dict[str, Any]) -> None:
    ids = [m.value["event_id"] for m in outputs if m.value and m.value["source"] != "timer"]
    seen: dict[str, list[tuple[str, str, str]]] = {}
    for m in outputs:
        if m.value and m.value["source"] != "timer":
            seen.setdefault(m.value["event_id"], []).append(
                (m.topic, m.headers.get("flowship.version", ""), m.value["source"]))
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"{len(twice)} duplicated outputs, e.g. {list(twice.items())[:4]}"
    assert set(ids) == set(evs), f"{len(set(evs) - set(ids))} inputs have no output"


# -- tests ---------------------------------------------------------------------------------------

def test_flips_under_load_take_the_predicted_branch(fresh_kafka_broker, tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    evs = events(24_000)
    by_id = {e["event_id"]: e for e in evs}
    produce_events(bootstrap, evs[:3_000])
    producer = threading.Thread(target=produce_events, args=(bootstrap, evs[3_000:21_000], 600.0))
    with JobProcess(JOB, bootstrap, tmp_path / "state", "--parallelism", "2") as job:
        try:
            shown = _wait_instances(bootstrap, 2, job)
            assert shown["flags"]["new-pricing"]["rules"] == "none"
            producer.start()
            changes = [flag_set(bootstrap, "new-pricing", "partitions=1,4:on")]
            changes.append(flag_set(bootstrap, "flowship.route", "partitions=1,4:side"))
            time.sleep(2)
            changes.append(flag_set(bootstrap, "tier", "percent=30:gold"))
            time.sleep(2)
            changes.append(flag_set(bootstrap, "beta", "field.tenant=a,b:on"))
            changes.append(flag_set(bootstrap, "flowship.route", "none"))
            time.sleep(2)
            changes.append(flag_set(bootstrap, "new-pricing", "percent=30:on", "default:off"))
            producer.join(120)
            produce_events(bootstrap, evs[21_000:])  # past the last cut, however late it came
            outputs = read_both(bootstrap, len(evs))
        except BaseException:
            print(tail(job.output(), 80))
            raise
    assert_once(outputs, by_id)
    counts = check_outputs(outputs, by_id, changes)
    side = [m for m in outputs if m.topic in (SIDE, SIDE_V2)]
    assert side and len(side) < len(outputs) / 2, len(side)
    # every flip took effect for some records and not for others (else nothing was tested)
    assert all(0 < c < len(evs) for c in counts.values()), counts
    for change in changes:
        assert change["decision"] == "commit"
        assert len(change["acknowledged_by"]) == 2  # both subtasks of the running version
        # the cut lies inside the produced input: records on both sides of it
        cut = change["cuts"]["flag-events"]
        assert sum(cut.values()) < len(evs)
    history = flowship("flag", "history", "flag-test", "--kafka-bootstrap", bootstrap, "--json")
    committed = [c["id"] for c in json.loads(history.stdout) if c["decision"] == "commit"]
    assert committed == [c["id"] for c in changes]


def _stop_recorded_pids(ledger: Any) -> None:
    """Stop every job process the ledger recorded (a rollback's), also after failures."""
    from flowship.testing._proc import pid_alive, stop_pid

    for entry in ledger.entries("flag-test") if ledger.root.exists() else []:
        pid = entry.data.get("pid")
        if pid and pid != os.getpid() and pid_alive(pid):
            stop_pid(pid)


def _wait_instances(bootstrap: str, count: int, job: JobProcess, timeout: float = 120.0,
                    exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert job.running(), tail(job.output())
        done = flowship("flag", "show", "flag-test", "--kafka-bootstrap", bootstrap, "--json")
        if done.returncode == 0:
            shown = json.loads(done.stdout)
            if len([i for i in shown["instances"] if i["id"] not in exclude]) >= count:
                return shown
        last = done.stdout + done.stderr
        time.sleep(1)
    raise AssertionError(f"the job's instances did not register: {last}\n{tail(job.output())}")


def test_replay_after_a_crash_takes_the_same_branches(fresh_kafka_broker, tmp_path: Path,
                                                      ) -> None:
    """The job dies hard after a flip and restarts from its latest checkpoint: the records it
    processes again take the branches they took before, and production has each once."""
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    evs = events(9_000)
    by_id = {e["event_id"]: e for e in evs}
    produce_events(bootstrap, evs[:1_000])
    producer = threading.Thread(target=produce_events, args=(bootstrap, evs[1_000:], 400.0))
    state = tmp_path / "state"
    jobs = [JobProcess(JOB, bootstrap, state, "--parallelism", "2").start()]
    try:
        before = {i["id"] for i in _wait_instances(bootstrap, 2, jobs[0])["instances"]}
        producer.start()
        changes = [flag_set(bootstrap, "new-pricing", "partitions=1,4:on"),
                   flag_set(bootstrap, "tier", "percent=30:gold"),
                   flag_set(bootstrap, "flowship.route", "partitions=2:side")]
        time.sleep(7)  # past the cuts, and a few checkpoints
        pid = jobs[0].pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # the job dies hard, JVM included
        assert jobs[0].wait(timeout=30) == -9
        jobs.append(JobProcess(JOB, bootstrap, state, "--parallelism", "2", "--upgrade-from",
                               "latest-checkpoint").start())
        # the killed instances count as running for LIVE_WINDOW_MS, unless replaced: a change
        # set now is acknowledged by the new attempts
        _wait_instances(bootstrap, 2, jobs[1], exclude=before)
        changes.append(flag_set(bootstrap, "beta", "field.tenant=c:on"))
        producer.join(120)
        outputs = read_both(bootstrap, len(evs))
    except BaseException:
        for job in jobs:
            print(tail(job.output(), 60))
        raise
    finally:
        for job in jobs:
            job.stop()
    assert_once(outputs, by_id)
    counts = check_outputs(outputs, by_id, changes)
    # the flips before the crash took effect for some records and not for others; the one after
    # it was acknowledged by the new attempts (its cut may lie past this test's input)
    assert all(0 < counts[k] < len(evs) for k in ("pricing", "tier", "route")), counts


def test_an_upgrade_by_savepoint_keeps_rules_and_cuts(fresh_kafka_broker, tmp_path: Path,
                                                     ) -> None:
    """Rules and cuts live in the control topic, offsets in the savepoint: version 2 goes on
    where version 1 stopped; the gate reports that v2 drops a flag a rule in force targets."""
    from flowship.deploy.ledger import LocalLedger

    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    evs = events(8_000)
    by_id = {e["event_id"]: e for e in evs}
    produce_events(bootstrap, evs[:1_000])
    producer = threading.Thread(target=produce_events, args=(bootstrap, evs[1_000:6_000], 350.0))
    state = tmp_path / "state"
    jobs = [JobProcess(JOB, bootstrap, state, "--parallelism", "2").start()]
    try:
        before = {i["id"] for i in _wait_instances(bootstrap, 2, jobs[0])["instances"]}
        producer.start()
        changes = [flag_set(bootstrap, "new-pricing", "partitions=1,4:on"),
                   flag_set(bootstrap, "beta", "field.tenant=a,b:on"),
                   flag_set(bootstrap, "flowship.route", "partitions=3:side")]
        time.sleep(4)
        jobs.append(JobProcess(HERE / "job_v2.py", bootstrap, state, "--parallelism", "2",
                               "--upgrade-from", "savepoint").start())
        assert jobs[0].wait(timeout=180) == 0  # stopped with a savepoint
        shown = _wait_instances(bootstrap, 2, jobs[1], exclude=before)
        assert {i["version"] for i in shown["instances"]} == {"2"}
        changes.append(flag_set(bootstrap, "tier", "percent=30:gold"))
        producer.join(120)
        produce_events(bootstrap, evs[6_000:])  # for version 2, past its cut
        outputs = read_both(bootstrap, len(evs))
    except BaseException:
        for job in jobs:
            print(tail(job.output(), 60))
        raise
    finally:
        for job in jobs:
            job.stop()
        _stop_recorded_pids(LocalLedger(state / "ledger"))
    assert_once(outputs, by_id)
    counts = check_outputs(outputs, by_id, changes)
    assert all(0 < counts[k] < len(evs) for k in ("pricing", "tier", "beta", "route")), counts
    versions = {m.headers.get("flowship.version") for m in outputs}
    upgrade = list(LocalLedger(state / "ledger").deployments("flag-test").values())[-1]
    steps = [(e.step.name, {k: v for k, v in e.data.items() if k != "manifest"})
             for e in upgrade]
    assert versions == {"1", "2"}, (versions, steps, tail(jobs[1].output(), 30))
    upgrade = list(LocalLedger(state / "ledger").deployments("flag-test").values())[-1]
    assert "ROLLING_BACK" not in [e.step.name for e in upgrade], upgrade
    checked = next(e for e in upgrade if e.step.name == "CHECKED")
    removed = [p for p in checked.data["problems"] if p["kind"] == "flag_removed"]
    assert removed and "rules in force" in removed[0]["message"], checked.data


def test_bad_input_is_refused_and_nothing_is_half_in_force(fresh_kafka_broker,
                                                           tmp_path: Path) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, TOPICS)

    def set_(flag: str, *rules: str, timeout: str = "30") -> subprocess.CompletedProcess[str]:
        return flowship("flag", "set", "flag-test", flag, *rules, "--kafka-bootstrap", bootstrap,
                        "--timeout", timeout)

    missing = set_("new-pricing", "all:on")
    assert missing.returncode == 2 and "control topic 'flag-test.control' does not exist" in (
        missing.stderr), missing.stderr
    from flowship.control import ensure_topic

    ensure_topic(bootstrap, "ghost.control")
    ghost = flowship("flag", "set", "ghost", "x", "all:on", "--kafka-bootstrap", bootstrap)
    assert ghost.returncode == 2 and "no version of job 'ghost' has run" in ghost.stderr

    evs = events(3_000)
    produce_events(bootstrap, evs[:1_000])
    with JobProcess(JOB, bootstrap, tmp_path / "state", "--parallelism", "2") as job:
        try:
            _wait_instances(bootstrap, 2, job)
            cases = {
                ("no-such-flag", "all:on"): "not declared by job 'flag-test'",
                ("new-pricing", "percent=150:on"): "outside 0-100",
                ("new-pricing", "partitions=x:on"): "whole numbers",
                ("tier", "all:platinum"): "no variant 'platinum'",
            }
            for (flag, rule), why in cases.items():
                done = set_(flag, rule)
                assert done.returncode == 2 and why in done.stderr, (flag, rule, done.stderr)
            # an instance that never acknowledges: the job's process (JVM included) frozen
            assert job.pid is not None
            os.killpg(job.pid, signal.SIGSTOP)
            try:
                silent = set_("new-pricing", "all:on", timeout="3")
            finally:
                os.killpg(job.pid, signal.SIGCONT)
            assert silent.returncode == 9, silent.stderr
            assert "no acknowledgement within 3 s" in silent.stderr
            assert "in force nowhere" in silent.stderr
            produce_events(bootstrap, evs[1_000:])
            outputs = read_both(bootstrap, len(evs))
        except BaseException:
            print(tail(job.output(), 60))
            raise
    shown = json.loads(flowship("flag", "show", "flag-test", "--kafka-bootstrap", bootstrap,
                                "--json").stdout)
    assert shown["flags"]["new-pricing"]["rules"] == "none" and not shown["pending"]
    history = json.loads(flowship("flag", "history", "flag-test", "--kafka-bootstrap",
                                  bootstrap, "--json").stdout)
    assert [h["decision"] for h in history] == ["abort"]
    # nothing half in force: every output took the declared defaults
    assert_once(outputs, {e["event_id"]: e for e in evs})
    counts = check_outputs(outputs, {e["event_id"]: e for e in evs}, [])
    assert counts["pricing"] == counts["tier"] == counts["beta"] == 0, counts


@pytest.mark.cluster
def test_flags_on_a_session_cluster(kafka_broker, flink_session_cluster, tmp_path: Path) -> None:
    """The same protocol with the instances in a session cluster's TaskManager."""
    bootstrap = kafka_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    evs = events(6_000)
    by_id = {e["event_id"]: e for e in evs}
    produce_events(bootstrap, evs[:1_000])
    done = subprocess.run(
        [sys.executable, str(JOB), "--target", flink_session_cluster.rest_url,
         "--kafka-bootstrap", bootstrap, "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    job_id = done.stdout.strip().split()[-1]
    rest = flink_session_cluster.rest
    producer = threading.Thread(target=produce_events, args=(bootstrap, evs[1_000:4_000], 400.0))
    try:
        deadline = time.monotonic() + 120
        while True:
            shown = flowship("flag", "show", "flag-test", "--kafka-bootstrap", bootstrap, "--json")
            if shown.returncode == 0 and len(json.loads(shown.stdout)["instances"]) >= 2:
                break
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(1)
        producer.start()
        changes = [flag_set(bootstrap, "new-pricing", "partitions=1,4:on"),
                   flag_set(bootstrap, "flowship.route", "partitions=0:side"),
                   flag_set(bootstrap, "tier", "percent=30:gold")]
        producer.join(120)
        produce_events(bootstrap, evs[4_000:])
        outputs = read_both(bootstrap, len(evs))
    finally:
        rest.cancel(job_id)
    assert_once(outputs, by_id)
    counts = check_outputs(outputs, by_id, changes)
    assert all(0 < counts[k] < len(evs) for k in ("pricing", "tier", "route")), counts
