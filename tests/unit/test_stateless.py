"""``fs.Job(..., stateless=True)``: checked against the module's state, in the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyflink.datastream import KeyedProcessFunction

import flowship as fs
from flowship.errors import ConfigError
from flowship.job._runtime import restore_options

CLICK = Path(__file__).resolve().parents[2] / "examples" / "click_sessions" / "click.avsc"
SCHEMA = fs.StateSchema("counter", versions={
    1: {"type": "record", "name": "Count", "fields": [{"name": "n", "type": "long"}]}})
SOURCE = fs.KafkaSource(uid="in", topic="in", schema=CLICK)
SINK = fs.KafkaSink(uid="out", topic="out", schema=CLICK)


@fs.stateful("counter", count=fs.ValueState(SCHEMA))
class Counter(KeyedProcessFunction):
    def process_element(self, value, ctx):
        yield value


def test_stateless_job_with_state_is_refused_with_the_uids() -> None:
    job = fs.Job("counting", version="1", sources=[SOURCE], sinks=[SINK], stateless=True)
    with pytest.raises(ConfigError, match=r"stateful operators \['counter'\]"):
        job.manifest()


def test_manifest_says_whether_the_job_is_stateless() -> None:
    stateful = fs.Job("counting", version="1", sources=[SOURCE], sinks=[SINK])
    assert stateful.manifest()["stateless"] is False
    assert "counter" in stateful.manifest()["stateful"]


def test_stateless_restore_lets_unclaimed_state_go() -> None:
    job = fs.Job("counting", version="1", sources=[SOURCE], sinks=[SINK], stateless=True)
    options = restore_options("file:///sp/savepoint-1", job)
    assert options == {
        "execution.state-recovery.path": "file:///sp/savepoint-1",
        "execution.state-recovery.ignore-unclaimed-state": "true",
    }
    plain = fs.Job("counting", version="1", sources=[SOURCE], sinks=[SINK])
    assert "execution.state-recovery.ignore-unclaimed-state" not in restore_options("/x", plain)
    assert restore_options(None, job) == {}
