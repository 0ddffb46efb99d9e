"""An automatic rollback whose cancel Flink never confirms starts nothing (exit 3).

docs/concepts/deployments.md: when the new version is not healthy the deployer records FAILED
and ROLLING_BACK, cancels the new job and waits until Flink confirms it ended; "a cancel that is
not confirmed within 120 s is recorded `FAILED` and nothing is started (exit 3: cancel the job
yourself, then `flowship rollback`)". A fake JobManager (a real HTTP server giving Flink 2.2's
answers) accepts every cancel and keeps the job RUNNING; the ledger is the real one. The health
watch is the only part stood in for: its verdict is "not healthy".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_jobmanager import serve

from flowship.deploy import alive
from flowship.deploy import engine as engine_module
from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.exits import EXIT_FAILED, exit_code_for
from flowship.deploy.health import Health
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.errors import JobFailedError

JOB = "stuck"
OLD = "a" * 32  # v1's Flink job: stopped with the pre-upgrade savepoint
NEW = "b" * 32  # v2's Flink job: RUNNING, and it stays so whatever is asked
#: the cancel's wait in this test (the documented one, CANCEL_TIMEOUT, is 120 s)
SHORT_S = 1.5


class NeverStarted(Target):
    """The target of v2: it runs already (the watch is resumed); nothing may be started."""

    def __init__(self, rest_url: str) -> None:
        self.rest_url = rest_url
        self.started = False
        self.released = False

    def start(self, restore: str | None, deployment: str) -> str:
        self.started = True
        return NEW

    def cancelled(self) -> None:
        self.released = True  # only after a confirmed cancel


def _v2_running_unjudged(ledger: LocalLedger, flink: str, v1_script: Path) -> None:
    """v1 stopped with a savepoint, v2 RUNNING; its deployer died before the health verdict."""
    with ledger.holding(JOB):
        ledger.record(JOB, "d1", Step.PLANNED, version="1", script=str(v1_script))
        ledger.record(JOB, "d1", Step.SUBMITTED, rest_url=flink)
        ledger.record(JOB, "d1", Step.RUNNING, job_id=OLD, rest_url=flink)
        ledger.record(JOB, "d2", Step.PLANNED, version="2", previous="d1", script="/jobs/v2.py")
        ledger.record(JOB, "d2", Step.CHECKED)
        ledger.record(
            JOB, "d2", Step.SAVEPOINTING, target="/sp", old_job_id=OLD, old_rest_url=flink
        )
        ledger.record(JOB, "d2", Step.STOPPED, savepoint="file:/sp/savepoint-1")
        ledger.record(JOB, "d2", Step.SUBMITTED, rest_url=flink, restored_from="file:/sp")
        ledger.record(JOB, "d2", Step.RUNNING, job_id=NEW, rest_url=flink)


def test_a_cancel_flink_never_confirms_is_recorded_failed_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unhealthy = Health(False, "the job failed 3x: java.lang.RuntimeException: boom")
    monkeypatch.setattr(engine_module, "watch", lambda *args, **kwargs: unhealthy)
    real_cancel = engine_module.cancel_confirmed
    asked: list[dict[str, Any]] = []

    def cancel_in_short(rest_url: str, job_id: str, **kwargs: Any) -> str:
        asked.append({"job_id": job_id, **kwargs})
        return real_cancel(rest_url, job_id, **{**kwargs, "timeout": SHORT_S})

    monkeypatch.setattr(engine_module, "cancel_confirmed", cancel_in_short)
    spawned: list[list[str]] = []

    class Exited:  # a rollback process that ended at once (had one been started)
        pid = 0

        def poll(self) -> int:
            return 1

    def spawn(cmd: list[str], log_file: Path) -> Exited:
        spawned.append(cmd)
        return Exited()

    monkeypatch.setattr(engine_module, "spawn_detached", spawn)
    v1_script = tmp_path / "v1.py"  # the previous version's code, there to be started
    v1_script.write_text("raise SystemExit('the previous version must not start')\n")

    ledger = LocalLedger(tmp_path / "ledger")
    cancels: list[str] = []
    with serve({OLD: "CANCELED", NEW: "RUNNING"}, broken="none", cancels=cancels) as flink:
        _v2_running_unjudged(ledger, flink, v1_script)
        target = NeverStarted(flink)
        release = Release(JOB, "2", {"version": "2"}, "/jobs/v2.py")
        engine = Engine(ledger, release, target, Policy(tmp_path / "state"))
        with pytest.raises(JobFailedError) as raised:
            engine.upgrade()

    # the documented exit code, and what to do next
    assert exit_code_for(raised.value) == EXIT_FAILED == 3
    message = str(raised.value)
    assert f"Flink job {NEW} was not confirmed cancelled" in message
    assert f"flink cancel {NEW}" in message and f"flowship rollback {JOB}" in message
    # the cancel was asked (again and again), with the documented wait: not given up at once
    assert cancels and set(cancels) == {NEW}
    assert asked == [{"job_id": NEW, "local": False}]  # the engine leaves the default wait
    assert alive.CANCEL_TIMEOUT == 120.0
    # the ledger: the verdict, the rollback begun, then its failure with the reason
    steps = [e.step for e in ledger.deployments(JOB)["d2"]]
    assert steps[-4:] == [Step.RUNNING, Step.FAILED, Step.ROLLING_BACK, Step.FAILED]
    entries = ledger.deployments(JOB)["d2"]
    assert entries[-3].data["reason"] == unhealthy.reason
    assert entries[-2].data["to_version"] == "1"
    reason = entries[-1].data["reason"]
    assert f"{NEW} was not confirmed cancelled" in reason
    assert "not reported cancelled after 2s (last seen: RUNNING" in reason
    assert "the previous version was not started" in reason
    # nothing started: no rollback process, no new deployment, the target never released
    assert spawned == [] and not target.started and not target.released
    assert list(ledger.deployments(JOB)) == ["d1", "d2"]
    assert ledger.held(JOB) is None  # the lease is given back: `flowship rollback` can run
