"""Which savepoint an automatic rollback starts the previous version from."""

from __future__ import annotations

from pathlib import Path

from flowship.deploy.engine import pre_upgrade_savepoint
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step


def test_a_restarted_deployment_rolls_back_to_the_savepoint_of_the_upgrade_it_restarts(
    tmp_path: Path,
) -> None:
    ledger = LocalLedger(tmp_path)
    ledger.acquire("j")  # record() writes only for the lease holder
    ledger.record("j", "up", Step.PLANNED, version="2", previous="v1")
    ledger.record("j", "up", Step.CHECKED)
    ledger.record("j", "up", Step.SAVEPOINTING, target="/s/up")
    ledger.record("j", "up", Step.STOPPED, savepoint="file:/s/up/savepoint-1")
    ledger.record("j", "up", Step.SUBMITTED)
    ledger.record("j", "up", Step.RUNNING, job_id="a")
    ledger.record("j", "up", Step.FAILED, reason="the job's process is gone")
    # restarted from its latest checkpoint, died again, restarted again
    ledger.record("j", "r1", Step.PLANNED, version="2", previous="v1", restarts="up",
                  restored_from="file:/c/chk-3")
    ledger.record("j", "r1", Step.SUBMITTED)
    ledger.record("j", "r1", Step.RUNNING, job_id="b")
    ledger.record("j", "r1", Step.FAILED, reason="the job's process is gone")
    ledger.record("j", "r2", Step.PLANNED, version="2", previous="v1", restarts="r1",
                  restored_from="file:/c/chk-7")
    deployments = ledger.deployments("j")
    assert pre_upgrade_savepoint(deployments, "r2") == "/s/up/savepoint-1"
    assert pre_upgrade_savepoint(deployments, "up") == "/s/up/savepoint-1"


def test_a_replaying_rollback_goes_back_to_where_it_stopped_and_none_is_none(
    tmp_path: Path,
) -> None:
    ledger = LocalLedger(tmp_path)
    ledger.acquire("j")  # record() writes only for the lease holder
    ledger.record("j", "rb", Step.PLANNED, version="1", previous="v2", replay=True)
    ledger.record("j", "rb", Step.CHECKED)
    ledger.record("j", "rb", Step.SAVEPOINTING, target="/s/rb")
    ledger.record("j", "rb", Step.STOPPED, savepoint="file:/s/old", old_savepoint="/s/rb/sp-2")
    ledger.record("j", "first", Step.PLANNED, version="1")
    deployments = ledger.deployments("j")
    assert pre_upgrade_savepoint(deployments, "rb") == "/s/rb/sp-2"
    assert pre_upgrade_savepoint(deployments, "first") is None
    # a chain that loops (a ledger written by hand) ends rather than spins
    ledger.record("j", "x", Step.PLANNED, restarts="y")
    ledger.record("j", "y", Step.PLANNED, restarts="x")
    assert pre_upgrade_savepoint(ledger.deployments("j"), "x") is None
