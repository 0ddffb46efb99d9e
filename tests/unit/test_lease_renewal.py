"""The lease is renewed while a deployment runs; a lost lease stops it before its next step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.ledger import LeaseLostError, LocalLedger
from flowship.deploy.machine import Step

JOB = "renewed"


class SlowStart(Target):
    """A target whose start takes ``seconds`` (as a slow restore would), then ``during()``."""

    rest_url = "http://127.0.0.1:1"

    def __init__(self, seconds: float, during: object = None) -> None:
        self.seconds = seconds
        self.during = during
        self.finished = False

    def start(self, restore: str | None, deployment: str) -> str:
        if callable(self.during):
            self.during()
        time.sleep(self.seconds)
        return "f" * 32

    def finish(self) -> None:
        self.finished = True


def _engine(ledger: LocalLedger, target: Target, tmp_path: Path) -> Engine:
    release = Release(JOB, "1", {"version": "1"}, "/jobs/renewed.py")
    return Engine(ledger, release, target, Policy(tmp_path / "state", bounded=True))


def test_a_step_longer_than_the_lease_keeps_it_renewed(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "ledger", lease_ttl=0.9)
    target = SlowStart(seconds=3.0)  # more than three times the lease's time to live
    assert _engine(ledger, target, tmp_path).deploy() == 0
    steps = [e.step for e in ledger.entries(JOB)]
    assert steps == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING]
    assert target.finished
    assert not (tmp_path / "ledger" / f"{JOB}.lease").exists()  # given back at the end


def test_a_lease_lost_during_a_step_stops_the_deployment_before_the_next(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    ledger = LocalLedger(root, lease_ttl=0.9)
    other = LocalLedger(root, host="other-host")

    def taken_over() -> None:
        # another deployer takes the lease while this one is in the middle of a step
        (root / f"{JOB}.lease").unlink()
        other.acquire(JOB)

    target = SlowStart(seconds=1.0, during=taken_over)
    with pytest.raises(LeaseLostError, match="no longer this deployer's"):
        _engine(ledger, target, tmp_path).deploy()
    steps = [e.step for e in ledger.entries(JOB)]
    assert steps == [Step.PLANNED, Step.SUBMITTED]  # RUNNING was never recorded
    assert not target.finished
    assert (root / f"{JOB}.lease").exists()  # the new holder's lease is left alone


def test_renewer_marks_the_lease_lost_when_renewal_fails(tmp_path: Path) -> None:
    from flowship.deploy.ledger import LeaseRenewer

    root = tmp_path / "ledger"
    ledger = LocalLedger(root, lease_ttl=0.6)
    with LeaseRenewer(ledger, JOB) as renewer:
        lease = ledger.acquire(JOB)
        time.sleep(1.0)  # renewed meanwhile: still valid past its first expiry
        ledger.check_lease(JOB)
        (root / f"{JOB}.lease").unlink()
        LocalLedger(root, host="other-host").acquire(JOB)
        time.sleep(0.6)
        assert renewer.lost is not None
    with pytest.raises(LeaseLostError):
        ledger.record(JOB, "d1", Step.PLANNED)
    ledger.release(lease)
