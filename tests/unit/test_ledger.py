"""The deployment ledger and the upgrade state machine (no JVM)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowship.deploy.ledger import LeaseHeldError, LedgerError, LocalLedger
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
        ledger.record("j", "d1", Step.PLANNED)
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
