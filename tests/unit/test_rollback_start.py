"""A rollback's start waits out a Kafka that does not answer: the job is never left down."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.deploy import engine as engine_module
from flowship.deploy.engine import Engine, Policy, Release, Target
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step
from flowship.errors import ClusterError, ConfigError

JOB = "patient"


class KafkaAwayFor(Target):
    """A target whose checks find Kafka silent ``silent`` times, then ``then`` (or fine)."""

    rest_url = "http://127.0.0.1:1"

    def __init__(self, silent: int, then: Exception | None = None) -> None:
        self.silent = silent
        self.then = then
        self.checks = 0
        self.started = False

    def prepare(self) -> None:
        self.checks += 1
        if self.checks <= self.silent:
            msg = "Kafka at 127.0.0.1:9 did not answer within 10 s (Connection refused)"
            raise ClusterError(msg)
        if self.then is not None:
            raise self.then

    def start(self, restore: str | None, deployment: str) -> str:
        self.started = True
        return "f" * 32


def _deploy(tmp_path: Path, target: Target, rollback_of: str | None) -> LocalLedger:
    ledger = LocalLedger(tmp_path / "ledger")
    release = Release(JOB, "1", {"version": "1"}, "/jobs/patient.py")
    Engine(ledger, release, target, Policy(tmp_path / "state", bounded=True)).deploy(
        "/savepoints/sp-1", rollback_of
    )
    return ledger


def test_a_rollbacks_start_waits_for_kafka_to_answer(tmp_path: Path) -> None:
    target = KafkaAwayFor(silent=2)
    ledger = _deploy(tmp_path, target, rollback_of="d-bad")
    assert target.checks == 3 and target.started
    steps = [e.step for e in ledger.entries(JOB)]
    assert steps == [Step.PLANNED, Step.SUBMITTED, Step.RUNNING]


def test_a_first_deploy_fails_at_once_when_kafka_is_silent(tmp_path: Path) -> None:
    target = KafkaAwayFor(silent=2)
    with pytest.raises(ClusterError, match="did not answer"):
        _deploy(tmp_path, target, rollback_of=None)
    assert target.checks == 1 and not target.started


def test_a_rollbacks_start_gives_up_on_kafka_in_time_and_at_once_on_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "ROLLBACK_KAFKA_WAIT_S", 2.5)
    silent = KafkaAwayFor(silent=100)
    with pytest.raises(ClusterError, match="did not answer"):
        _deploy(tmp_path / "a", silent, rollback_of="d-bad")
    assert 2 <= silent.checks <= 3 and not silent.started  # 1 s, then 2 s apart
    missing = KafkaAwayFor(silent=0, then=ConfigError("missing on Kafka: topic 'clicks'"))
    with pytest.raises(ConfigError, match="missing"):
        _deploy(tmp_path / "b", missing, rollback_of="d-bad")
    assert missing.checks == 1 and not missing.started
