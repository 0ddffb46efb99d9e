"""The deployment ledger and the upgrade state machine (no JVM)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowship.deploy.ledger import LeaseHeldError, LeaseLostError, LedgerError, LocalLedger
from flowship.deploy.machine import NEXT, Step, TransitionError, check_transition


def test_happy_path_of_an_upgrade_is_allowed() -> None:
    path = [Step.PLANNED, Step.CHECKED, Step.SAVEPOINTING, Step.STOPPED, Step.SUBMITTED,
            Step.RUNNING, Step.STABLE]
    current = None
    for step in path:
        check_transition(current, step)
        current = step
    assert Step.STABLE.terminal and Step.REFUSED.terminal and Step.ROLLED_BACK.terminal


@pytest.mark.parametrize(("current", "new"), [
    (None, Step.RUNNING),
    (Step.REFUSED, Step.SAVEPOINTING),  # a refused upgrade never takes a savepoint
    (Step.PLANNED, Step.STOPPED),  # no stop without the gate and a savepoint
    (Step.CHECKED, Step.SUBMITTED),
    (Step.STABLE, Step.FAILED),
    (Step.ROLLED_BACK, Step.RUNNING),
])
def test_illegal_transitions_are_refused(current: Step | None, new: Step) -> None:
    with pytest.raises(TransitionError, match=r"cannot be followed|starts at PLANNED"):
        check_transition(current, new)


def test_every_step_is_reachable_from_planned() -> None:
    seen, todo = {Step.PLANNED}, [Step.PLANNED]
    while todo:
        for nxt in NEXT[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(Step)


def test_ledger_is_append_only_and_checks_transitions(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    dep = ledger.new_deployment_id()
    ledger.acquire("click-sessions")
    ledger.record("click-sessions", dep, Step.PLANNED, version="1")
    ledger.record("click-sessions", dep, Step.SUBMITTED, job_id="abc")
    ledger.record("click-sessions", dep, Step.RUNNING)
    with pytest.raises(TransitionError):
        ledger.record("click-sessions", dep, Step.SAVEPOINTING)
    lines = (tmp_path / "ledger" / "click-sessions.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == ["PLANNED", "SUBMITTED", "RUNNING"]
    assert ledger.last_step("click-sessions", dep) is Step.RUNNING
    current = ledger.current("click-sessions")
    assert current is not None and current[0] == dep
    assert current[1] == {"version": "1", "job_id": "abc"}
    assert ledger.current("other-job") is None


def test_corrupt_ledger_line_is_a_clear_error(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    (tmp_path / "j.jsonl").write_text('{"job": "j"}\nnot json\n')
    with pytest.raises(LedgerError, match="line 1 is not a valid entry"):
        ledger.entries("j")


def test_unwritable_ledger_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        ledger = LocalLedger(blocker / "ledger")  # a directory under a regular file
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        ledger = LocalLedger(ro / "ledger")
    with pytest.raises(LedgerError, match="not writable"):
        ledger.acquire("j")


def test_second_deployer_is_refused_while_the_lease_is_live(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    lease = ledger.acquire("j")
    with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"):
        LocalLedger(tmp_path).acquire("j")
    ledger.release(lease)
    LocalLedger(tmp_path).release(ledger.acquire("j"))


def test_lease_of_a_dead_holder_is_recovered(tmp_path: Path) -> None:
    # a real process takes the lease and dies without releasing it
    code = ("import sys; from pathlib import Path; from flowship.deploy.ledger import LocalLedger;"
            f"LocalLedger(Path({str(tmp_path)!r})).acquire('j'); sys.exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    held = json.loads((tmp_path / "j.lease").read_text())
    assert held["pid"] != os.getpid()
    lease = LocalLedger(tmp_path).acquire("j")
    assert lease.pid == os.getpid()


def test_expired_lease_is_recovered(tmp_path: Path) -> None:
    LocalLedger(tmp_path).acquire("j", ttl=-1)  # expired at once, holder (this pid) alive
    assert LocalLedger(tmp_path).acquire("j").expires > 0


def _contend(root: str, results: multiprocessing.Queue, barrier: object) -> None:
    try:
        LocalLedger(Path(root)).acquire("j")
        results.put("won")
    except LeaseHeldError:
        results.put("refused")
    barrier.wait(timeout=30)  # type: ignore[attr-defined]  # stay alive until all have tried


def test_only_one_of_concurrent_deployers_gets_the_lease(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=_contend, args=(str(tmp_path), results, barrier))
             for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    outcomes = sorted(results.get(timeout=10) for _ in procs)
    # every contender is alive until all have tried: exactly one holds the lease
    assert outcomes == ["refused"] * 5 + ["won"]


def _take_over(root: str, results: multiprocessing.Queue, barrier: object, go: object) -> None:
    go.wait(timeout=30)  # type: ignore[attr-defined]  # all contenders start together
    try:
        LocalLedger(Path(root)).acquire("j")
        results.put("won")
    except LeaseHeldError:
        results.put("refused")
    barrier.wait(timeout=30)  # type: ignore[attr-defined]  # stay alive until all have tried


def test_only_one_contender_takes_over_a_stale_lease(tmp_path: Path) -> None:
    # an expired lease sits in the ledger; contenders race to take it over, many times: a
    # contender must never move away the fresh lease another one has just created
    ctx = multiprocessing.get_context("fork")
    for attempt in range(40):
        root = tmp_path / str(attempt)
        LocalLedger(root).acquire("j", ttl=-1)  # expired at once
        results: multiprocessing.Queue = ctx.Queue()
        barrier, go = ctx.Barrier(4), ctx.Barrier(4)
        procs = [ctx.Process(target=_take_over, args=(str(root), results, barrier, go))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        outcomes = sorted(results.get(timeout=10) for _ in procs)
        assert outcomes == ["refused"] * 3 + ["won"], f"attempt {attempt}: {outcomes}"


def test_a_lease_file_being_written_is_held_not_stale(tmp_path: Path) -> None:
    # a holder between creating its lease file and writing it: the file is young and empty
    (tmp_path / "j.lease").write_text("")
    with pytest.raises(LeaseHeldError, match="being written"):
        LocalLedger(tmp_path).acquire("j")
    # one left empty long ago (its writer died) is stale and taken over
    old = time.time() - 3600
    os.utime(tmp_path / "j.lease", (old, old))
    assert LocalLedger(tmp_path).acquire("j").pid == os.getpid()


def _acquire_release(root: str, times: int) -> None:
    ledger = LocalLedger(Path(root))
    for _ in range(times):
        ledger.release(ledger.acquire("j"))


def test_lease_file_is_never_seen_empty(tmp_path: Path) -> None:
    # the lease's content appears at once with the file: a reader never finds it empty
    ctx = multiprocessing.get_context("fork")
    writer = ctx.Process(target=_acquire_release, args=(str(tmp_path), 2000))
    writer.start()
    empty = reads = 0
    try:
        while writer.is_alive():
            try:
                text = (tmp_path / "j.lease").read_text()
            except FileNotFoundError:
                continue
            reads += 1
            empty += text == ""
    finally:
        writer.join(timeout=60)
    assert reads > 0 and empty == 0, f"{empty} of {reads} reads found an empty lease file"


def test_record_needs_the_lease(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    with pytest.raises(LeaseLostError, match="does not hold the lease"):
        ledger.record("j", "d1", Step.PLANNED)
    assert ledger.entries("j") == []
    lease = ledger.acquire("j")
    ledger.record("j", "d1", Step.PLANNED)
    ledger.release(lease)
    with pytest.raises(LeaseLostError):
        ledger.record("j", "d1", Step.CHECKED)
    assert [e.step for e in ledger.entries("j")] == [Step.PLANNED]


def test_record_is_refused_once_the_lease_expired_or_was_taken_over(tmp_path: Path) -> None:
    first = LocalLedger(tmp_path)
    first.acquire("j", ttl=0.2)
    first.record("j", "d1", Step.PLANNED)
    time.sleep(0.3)
    with pytest.raises(LeaseLostError, match="expired"):
        first.record("j", "d1", Step.CHECKED)
    second = LocalLedger(tmp_path)
    second.acquire("j")  # takes the expired lease over
    with pytest.raises(LeaseLostError):
        first.record("j", "d1", Step.CHECKED)
    second.record("j", "d1", Step.FAILED, reason="taken over")
    assert [e.step for e in first.entries("j")] == [Step.PLANNED, Step.FAILED]


def test_a_lease_taken_over_is_noticed_by_its_old_holder(tmp_path: Path) -> None:
    # the old holder's clock says its lease is still valid, but the lease file names another
    first = LocalLedger(tmp_path)
    lease = first.acquire("j")
    (tmp_path / "j.lease").unlink()
    LocalLedger(tmp_path).acquire("j")
    with pytest.raises(LeaseLostError, match="another deployer"):
        first.record("j", "d1", Step.PLANNED)
    first.release(lease)  # giving back a lost lease leaves the new holder's alone
    assert (tmp_path / "j.lease").exists()


def test_a_lost_lease_exits_7() -> None:
    from flowship.deploy.exits import EXIT_BUSY, exit_code_for

    assert exit_code_for(LeaseLostError("lost")) == EXIT_BUSY


def test_the_ledger_setting_picks_the_store(tmp_path: Path) -> None:
    from flowship.deploy.kafka_ledger import TOPIC, KafkaLedger
    from flowship.deploy.ledgers import open_ledger
    from flowship.errors import ConfigError
    from flowship.job._settings import Settings

    local = Settings(state_dir=tmp_path).open_ledger()
    assert isinstance(local, LocalLedger) and local.root == tmp_path / "ledger"
    kafka = Settings(ledger="kafka://10.0.0.1:9092,10.0.0.2:9092", host_id="h1").open_ledger()
    assert isinstance(kafka, KafkaLedger)
    assert kafka.bootstrap == "10.0.0.1:9092,10.0.0.2:9092"
    assert (kafka.topic, kafka.host) == (TOPIC, "h1")
    named = open_ledger("kafka://broker:9092/team.deployments", tmp_path)
    assert isinstance(named, KafkaLedger) and named.topic == "team.deployments"
    with pytest.raises(ValueError, match="kafka://HOST:PORT"):
        Settings(ledger="s3://bucket/ledger")
    with pytest.raises(ConfigError, match="not a Kafka ledger URL"):
        open_ledger("kafka:///no-host", tmp_path)
    assert isinstance(open_ledger(str(tmp_path / "elsewhere"), tmp_path), LocalLedger)


def _append_big_entries(root: str, count: int) -> None:
    ledger = LocalLedger(Path(root))
    ledger.acquire("j")
    for n in range(count):  # entries larger than a page: written page by page
        ledger.record("j", f"d{n}", Step.PLANNED, manifest={"pad": "x" * (9_000 + n * 37)})


def test_a_reader_never_sees_an_append_in_flight(tmp_path: Path) -> None:
    """Found in CI: a deployer's large entry, read while being written, failed the reader."""
    writer = multiprocessing.get_context("spawn").Process(
        target=_append_big_entries, args=(str(tmp_path), 400))
    writer.start()
    ledger = LocalLedger(tmp_path)
    reads = 0
    try:
        while writer.is_alive():
            for entry in ledger.entries("j"):
                assert entry.job == "j"
            reads += 1
    finally:
        writer.join(timeout=60)
    assert writer.exitcode == 0
    assert reads > 10, "the reader never overlapped the writer: nothing was tested"
    assert len(ledger.entries("j")) == 400


def test_a_torn_tail_left_by_a_dead_writer_is_dropped_by_the_next_append(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)
    ledger.acquire("j")
    dep = ledger.new_deployment_id()
    ledger.record("j", dep, Step.PLANNED, version="1")
    with (tmp_path / "j.jsonl").open("a") as f:
        f.write('{"at": 1.0, "data": {"job_id": "ab')  # the writer died here: never acknowledged
    assert [e.step for e in ledger.entries("j")] == [Step.PLANNED]
    ledger.record("j", dep, Step.SUBMITTED, job_id="abc")
    ledger.record("j", dep, Step.RUNNING)
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == ["PLANNED", "SUBMITTED", "RUNNING"]
    assert ledger.current("j") == (dep, {"version": "1", "job_id": "abc"})
