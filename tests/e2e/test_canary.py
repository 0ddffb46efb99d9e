"""`python job_v2.py --canary 0,3`, `flowship promote`, `flowship abort`: real broker, real Flink.

Version 1 of the example runs on the local target, reading 6 input partitions under continuous
input (30,000 events). A version that differs from it on 1 % of records (one field) starts as a
canary serving partitions 0 and 3, is promoted to every partition, then aborted: production is
version 1's again and the canary stops. Checked with an independent read_committed consumer:
every input's output appears in production exactly once, from the version the recorded cuts
say (its value tells: version 1.2 changes 1 % of them), and per user in input order (running
counts never go backwards, across every cut).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import events
import pytest
from helpers import EXAMPLE, produce_clicks, produce_clicks_when, read_outputs, tail

from flowship.deploy.ledger import FAULT_ENV, LocalLedger
from flowship.testing.jobs import JobProcess, job_command
from flowship.testing.kafka_io import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.jvm, pytest.mark.timeout(900)]

JOB = "click-sessions"
KEY = f"{JOB}.shadow"
ONE_PERCENT = Path(__file__).parent / "jobs" / "one_percent_v2.py"
PARTITIONS = 6
EVENTS = list(events.clicks(30_000, users=60))
FIRST = 4000


def changed(event_id: str) -> bool:
    """one_percent_v2.py's change, computed here on its own."""
    return int(event_id[1:]) % 100 == 0


def cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """``flowship ARGS``; with ``fault``, it SIGKILLs itself at that step (FAULT_ENV)."""
    env = {**os.environ, FAULT_ENV: fault} if fault else None
    return subprocess.run(
        [sys.executable, "-m", "flowship.cli", *args],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env=env,
    )


def wait_for(what: str, check: Any, timeout: float, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout:.0f}s\n{tail(log()) if log else ''}")


def routed(ledger: LocalLedger, deployment: str) -> list[dict[str, Any]]:
    return [e.data for e in ledger.deployments(KEY).get(deployment, []) if e.step.value == "ROUTED"]


def end_offsets(bootstrap: str) -> dict[int, int]:
    """The input's end offset per partition now."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends", "log_level": 3})
    try:
        return {
            p: reader.get_watermark_offsets(TopicPartition("clicks", p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        reader.close()


def serving_version(changes: list[dict[str, Any]], partition: int, offset: int) -> str:
    """Who serves the input at partition/offset: the last change (in order) whose cut is <= it.

    The same rule as the control plane's (a proposal's cut on a partition it did not know: 0).
    """
    serve: Any = []
    for change in changes:
        if int(change["cuts"].get("clicks", {}).get(str(partition), 0)) <= offset:
            serve = change["serve"]
    return "1.2" if serve == "all" or partition in serve else "1"


def check_production(
    outputs: list[Any], evs: list[dict[str, Any]], changes: list[dict[str, Any]]
) -> collections.Counter[tuple[str, bool]]:
    """Every input's output exactly once, from the version the cuts say, per user in order.

    Outputs of version 2 (an upgrade of the promoted version 1.2) are those of every partition's
    last inputs. Returns how many outputs each version wrote, on partitions 0 and 3 and on the
    others.
    """
    by_event: dict[str, list[Any]] = collections.defaultdict(list)
    for m in outputs:
        by_event[m.value["event_id"]].append(m)
    lost = {e["event_id"] for e in evs} - set(by_event)
    twice = {k: len(v) for k, v in by_event.items() if len(v) > 1}
    assert not lost and not twice, (
        f"lost {len(lost)} {sorted(lost)[:5]}, twice {len(twice)} {list(twice)[:5]}"
    )
    version_of = {
        i: 2 if m.headers["flowship.version"] == "2" else 1 for i, (m,) in by_event.items()
    }
    reference = events.reference_versioned(evs, version_of)
    served: collections.Counter[tuple[str, bool]] = collections.Counter()
    upgraded_from: dict[int, int] = {}
    def at(m: Any) -> tuple[int, int]:
        source, partition, offset = m.headers["flowship.source"].split("/")
        assert source == "clicks"
        return int(partition), int(offset)

    for event_id, (m,) in sorted(by_event.items(), key=lambda kv: at(kv[1][0])):
        partition, offset = at(m)
        got = m.headers["flowship.version"]
        if got == "2":
            upgraded_from.setdefault(int(partition), int(offset))
        else:
            assert int(partition) not in upgraded_from, (event_id, "version 1 after version 2")
            want = serving_version(changes, int(partition), int(offset))
            assert got == want, (event_id, m.headers, changes)
        expected = dict(reference[event_id])
        if got == "1.2" and changed(event_id):
            expected["previous_page"] = "/dark"
        assert m.value == expected, (event_id, m.value, expected)
        served[(got, int(partition) in (0, 3))] += 1
    last: dict[str, int] = {}
    for m in sorted(outputs, key=lambda m: (m.partition, m.offset)):
        user, total = m.value["user_id"], m.value["total_clicks"]
        assert total == last.get(user, 0) + 1, (user, total, last.get(user))
        last[user] = total
    return served


def test_canary_promote_and_abort_under_continuous_input(
    fresh_kafka_broker, tmp_path: Path
) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    create_topics(bootstrap, {"clicks": PARTITIONS, "session-stats": 4, "clicks.dlq": 1})
    produce_clicks(bootstrap, EVENTS[:FIRST])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    ledger_dir = ["--ledger-dir", str(state / "ledger")]
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    canary = JobProcess(ONE_PERCENT, bootstrap, state, "--canary", "0,3")
    canary.log = state / "canary.log"
    # the rest at 400 events/s (about 65 s): input flows through every step below
    producer = threading.Thread(target=produce_clicks, args=(bootstrap, EVENTS[FIRST:], 400.0))
    try:
        current = wait_for("version 1 RUNNING", lambda: ledger.current(JOB), 180, v1.output)
        read_outputs(bootstrap, expect=FIRST, timeout=180)

        # bad input: partitions that do not exist, a promote with no canary: nothing changes
        def records() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in (state / "ledger").glob("*.jsonl")}

        before = records()
        bad = subprocess.run(
            job_command(ONE_PERCENT, bootstrap, state, "--canary", "0,9"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert bad.returncode == 2, tail(bad.stdout + bad.stderr)
        assert "no input partition 9" in bad.stderr, bad.stderr
        nothing = cli("promote", JOB, *ledger_dir)
        assert nothing.returncode == 2 and "runs beside" in nothing.stderr, nothing.stderr
        assert records() == before

        producer.start()
        canary.start()

        def serving(what: Any) -> Any:
            def check() -> Any:
                assert canary.running(), tail(canary.output())
                found = ledger.current(KEY)
                if found is None:
                    return None
                changes = routed(ledger, found[0])
                return found if changes and changes[-1]["serve"] == what else None

            return check

        deployment, data = wait_for("the canary serving 0,3", serving([0, 3]), 300, canary.output)
        assert data["kind"] == "canary" and data["canary"] == [0, 3]
        assert data["version"] == "1.2" and data["shadow_of"] == current[0]
        again = cli("status", JOB, *ledger_dir)
        assert "serves input partitions 0,3 in production" in again.stdout, again.stdout
        second = subprocess.run(
            job_command(ONE_PERCENT, bootstrap, state, "--canary", "1"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert second.returncode == 2 and "runs already" in second.stderr, second.stderr
        # a flag change that would let both versions serve partition 1 is refused
        both = cli(
            "flag",
            "set",
            JOB,
            "flowship.route",
            "partitions=1:production",
            "--kafka-bootstrap",
            bootstrap,
        )
        assert both.returncode == 2 and "at once" in both.stderr, tail(both.stdout + both.stderr)

        # a deployer killed in the middle of a promote (before the change was proposed; after
        # it was in force, before the ledger knew), run again: it converges, nothing twice
        killed = cli("promote", JOB, *ledger_dir, "--partitions", "1", fault="ROUTING")
        assert killed.returncode == -signal.SIGKILL, tail(killed.stdout + killed.stderr)
        again = cli("promote", JOB, *ledger_dir, "--partitions", "1")
        assert again.returncode == 0, tail(again.stdout + again.stderr)
        killed = cli("promote", JOB, *ledger_dir, "--partitions", "2", fault="ROUTE_IN_FORCE")
        assert killed.returncode == -signal.SIGKILL, tail(killed.stdout + killed.stderr)
        assert ledger.deployments(KEY)[deployment][-1].step.value == "ROUTING"
        again = cli("promote", JOB, *ledger_dir, "--partitions", "2")
        assert again.returncode == 0, tail(again.stdout + again.stderr)
        time.sleep(4)
        promoted = cli("promote", JOB, *ledger_dir, "--json")
        assert promoted.returncode == 0, tail(promoted.stdout + promoted.stderr)
        assert json.loads(promoted.stdout)["serve"] == "all"
        # version 1 falls behind right after the cut (its process frozen, JVM included): the
        # canary reaches the cut first and must hold its outputs until version 1 committed
        # everything below it, or a user's later click would reach production before an
        # earlier one
        assert v1.pid is not None
        os.killpg(v1.pid, signal.SIGSTOP)
        try:
            time.sleep(6)
        finally:
            os.killpg(v1.pid, signal.SIGCONT)
        time.sleep(4)
        aborted = cli("abort", JOB, *ledger_dir, "--json")
        assert aborted.returncode == 0, tail(aborted.stdout + aborted.stderr)
        facts = json.loads(aborted.stdout)
        assert facts["handed_back"] and facts["handed_over"], facts
        assert canary.wait(timeout=120) == 0, tail(canary.output())
        assert ledger.current(KEY) is None and ledger.current(JOB) == current
        steps = [e.step.value for e in ledger.deployments(KEY)[deployment]]
        twice = ["ROUTING", "ROUTING", "ROUTED"]  # the killed deployer's, then its rerun's
        start = ["PLANNED", "SUBMITTED", "RUNNING", "ROUTING", "ROUTED"]
        assert steps[:11] == [*start, *twice, *twice], steps
        assert steps[11:] == ["ROUTING", "ROUTED", "ROUTING", "ROUTED", "RETIRED"], steps
        changes = routed(ledger, deployment)
        assert [c["serve"] for c in changes] == [[0, 3], [0, 1, 3], [0, 1, 2, 3], "all", []]
        # each change was proposed and committed once on the control topic, the ledger's
        history = cli("flag", "history", JOB, "--json", "--kafka-bootstrap", bootstrap)
        moves = [p for p in json.loads(history.stdout) if p["flag"] == "flowship.route"]
        assert [p["decision"] for p in moves] == ["commit"] * 5, moves
        assert [p["id"] for p in moves] == [c["change"] for c in changes]
        producer.join(timeout=300)
        assert v1.running(), tail(v1.output())

        # production, read independently: every input exactly once, from the version the cuts
        # say, and per user in input order
        outputs = read_outputs(bootstrap, expect=len(EVENTS), timeout=300)
        served = check_production(outputs, EVENTS, changes)
        # each step had input: the canary served 0 and 3 alone, then all, then nothing
        assert served[("1.2", True)] > 0 and served[("1.2", False)] > 0, served
        assert served[("1", True)] > 0 and served[("1", False)] > 0, served

        # the diff pairs each input's outputs across production and both side topics
        diffed = cli("diff", JOB, *ledger_dir, "--json")
        assert diffed.returncode == 0, tail(diffed.stdout + diffed.stderr)
        (sink,) = json.loads(diffed.stdout)["sinks"]
        assert sink["compared"] > 0 and sink["only_candidate"] == 0, sink
        assert set(sink["fields"]) <= {"previous_page"}, sink
        assert sink["different"] > 0, sink
    finally:
        if producer.is_alive():
            producer.join(timeout=300)
        canary.stop()
        v1.stop()


@pytest.mark.cluster
def test_canary_blue_green_flips_retire_and_upgrade_on_a_session_cluster(
    fresh_kafka_broker, flink_session_cluster, tmp_path: Path
) -> None:
    from test_cluster_upgrades import cancel_live_jobs

    bootstrap = fresh_kafka_broker.bootstrap
    rest = flink_session_cluster.rest
    create_topics(bootstrap, {"clicks": PARTITIONS, "session-stats": 4, "clicks.dlq": 1})
    produce_clicks(bootstrap, EVENTS[:1000])
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    flags = ["--target", flink_session_cluster.rest_url, "--kafka-bootstrap", bootstrap]
    flags += ["--state-dir", str(state)]
    ledger_dir = ["--ledger-dir", str(state / "ledger")]
    # input flows through the canary's start and the flips, then stops; the last events after
    # the upgrade
    flowing = threading.Event()
    sent = [1000]

    def feed() -> None:
        while not flowing.is_set() and sent[0] < len(EVENTS) - 1000:
            produce_clicks(bootstrap, EVENTS[sent[0] : sent[0] + 50])
            sent[0] += 50
            time.sleep(0.2)

    producer = threading.Thread(target=feed)

    def run(script: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *flags, *extra],
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )

    try:
        first = run(EXAMPLE / "job.py")
        assert first.returncode == 0, tail(first.stdout + first.stderr)
        read_outputs(bootstrap, expect=1000, timeout=180)
        current = ledger.current(JOB)
        assert current is not None
        producer.start()
        # on a session cluster the canary is one more job there; the command returns once it
        # serves its partitions
        done = run(ONE_PERCENT, "--canary", "0,3")
        assert done.returncode == 0, tail(done.stdout + done.stderr)
        found = ledger.current(KEY)
        assert found is not None
        deployment, data = found
        assert data["rest_url"] == current[1]["rest_url"] and data["job_id"] != current[1]["job_id"]
        assert [c["serve"] for c in routed(ledger, deployment)] == [[0, 3]]
        time.sleep(5)
        early = cli("retire", JOB, "1", *ledger_dir)
        assert early.returncode == 2 and "promote first" in early.stderr, early.stderr
        # blue-green: flip to 1.2, back to 1 (1.2 runs on, dark), and to 1.2 again
        for move in ("promote", "demote", "promote"):
            done = cli(move, JOB, *ledger_dir)
            assert done.returncode == 0, tail(done.stdout + done.stderr)
            if len(routed(ledger, deployment)) == 4:
                # the input stops now, below the last promotion's cut (agreed about 2 s of
                # input ahead of the end): retire agrees the same rules again, cut at the end
                flowing.set()
                producer.join(timeout=60)
            assert rest.job(data["job_id"])["state"] == "RUNNING"
            time.sleep(3)
        wrong = cli("retire", JOB, "1.2", *ledger_dir)
        assert wrong.returncode == 2 and "flowship abort" in wrong.stderr, wrong.stderr
        # blue-green's last step: version 1 stops, version 1.2 is the job's deployment
        # did the input stop below the last promotion's cut? (on a loaded machine the command
        # can return after the input passed it): then retire must re-cut, else it must not
        last_cuts = routed(ledger, deployment)[-1]["cuts"]["clicks"]
        idle_below = any(o < int(last_cuts[str(p)]) for p, o in end_offsets(bootstrap).items())
        retired = cli("retire", JOB, "1", *ledger_dir)
        assert retired.returncode == 0, tail(retired.stdout + retired.stderr)
        assert rest.job(current[1]["job_id"])["state"] == "FINISHED"  # stopped with a savepoint
        assert rest.job(data["job_id"])["state"] == "RUNNING"
        taken = ledger.current(JOB)
        assert taken is not None and taken[0] != current[0]
        assert taken[1]["version"] == "1.2" and taken[1]["kind"] == "promoted"
        assert taken[1]["job_id"] == data["job_id"] and taken[1]["lane"] == ".shadow"
        assert ledger.current(KEY) is None
        assert [e.step.value for e in ledger.deployments(JOB)[current[0]]][-1] == "RETIRED"
        assert ledger.deployments(KEY)[deployment][-1].step.value == "PROMOTED"
        # an upgrade of the promoted version continues from its state, in its lane; the last
        # events once it runs, so its health watch judges them rather than waiting out its
        # window on idle input
        producer.join(timeout=300)
        evs = EVENTS[: sent[0] + 1000]
        def version_2_runs() -> bool:
            current = ledger.current(JOB)
            return current is not None and current[1].get("version") == "2"

        finisher = threading.Thread(target=produce_clicks_when,
                                    args=(bootstrap, evs[sent[0] :], version_2_runs), daemon=True)
        finisher.start()
        upgraded = run(EXAMPLE / "job_v2.py", "--upgrade-from", "savepoint")
        finisher.join(timeout=120)
        assert upgraded.returncode == 0, tail(upgraded.stdout + upgraded.stderr)
        assert not finisher.is_alive(), "version 2 never ran"
        now = ledger.current(JOB)
        assert now is not None and now[1]["version"] == "2" and now[1]["lane"] == ".shadow"
        changes = routed(ledger, deployment)
        recut = 1 if idle_below else 0
        assert [c["serve"] for c in changes] == [[0, 3], "all", [], "all", *["all"] * recut]
        whys = [e.data.get("why") for e in ledger.deployments(KEY)[deployment]]
        assert whys.count("re-cut") == recut, (whys, idle_below)
        outputs = read_outputs(bootstrap, expect=len(evs), timeout=300)
        served = check_production(outputs, evs, changes)
        assert served[("1.2", True)] > 0 and served[("1", False)] > 0, served
        assert served[("2", True)] + served[("2", False)] > 0, served
    finally:
        flowing.set()
        if producer.is_alive():
            producer.join(timeout=300)
        cancel_live_jobs(rest)
