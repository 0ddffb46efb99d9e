"""`flowship status` and `flowship history` read the deployment ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowship.cli import main
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step


def _ledger(root: Path) -> None:
    ledger = LocalLedger(root)
    with ledger.holding("jobx"):
        ledger.record("jobx", "d1", Step.PLANNED, version="1")
        ledger.record("jobx", "d1", Step.SUBMITTED, rest_url="http://127.0.0.1:1")
        ledger.record("jobx", "d1", Step.RUNNING, job_id="a" * 32)
        ledger.record("jobx", "d2", Step.PLANNED, version="2")
        ledger.record("jobx", "d2", Step.REFUSED, report={"compatible": False})


def test_history_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _ledger(tmp_path)
    assert main(["history", "jobx", "--ledger-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["d1  version 1: PLANNED -> SUBMITTED -> RUNNING",
                   "d2  version 2: PLANNED -> REFUSED"]
    assert main(["status", "jobx", "--ledger-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"] == {"deployment": "d1", "version": "1", "job_id": "a" * 32,
                                 "rest_url": "http://127.0.0.1:1"}
    assert status["last"] == {"deployment": "d2", "step": "REFUSED", "version": "2",
                              "verdict_open_since": None}
    assert main(["history", "jobx", "--ledger-dir", str(tmp_path), "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["d1", "d2"]


def test_status_shows_an_upgrade_whose_health_verdict_is_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade left at RUNNING (its deployer died in the watch) is shown as still judged."""
    _ledger(tmp_path)
    ledger = LocalLedger(tmp_path)
    ledger.acquire("jobx")  # record() writes only for the lease holder
    ledger.record("jobx", "d3", Step.PLANNED, version="2", previous="d1")
    for step in (Step.CHECKED, Step.SAVEPOINTING, Step.STOPPED, Step.SUBMITTED):
        ledger.record("jobx", "d3", step)
    running = ledger.record("jobx", "d3", Step.RUNNING, job_id="b" * 32,
                            rest_url="http://127.0.0.1:1")
    assert main(["status", "jobx", "--ledger-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["last"]["verdict_open_since"] == running.at
    assert main(["status", "jobx", "--ledger-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "last deployment d3: version 2, RUNNING (watching, verdict open since " in out
    # a verdict closes it: STABLE is no longer "watching"
    ledger.record("jobx", "d3", Step.STABLE, reason="2 checkpoints")
    assert main(["status", "jobx", "--ledger-dir", str(tmp_path)]) == 0
    assert "watching" not in capsys.readouterr().out
    # a first deploy is never watched: RUNNING is where it stays, nothing is open
    assert main(["status", "jobx", "--ledger-dir", str(tmp_path / "none")]) == 2
    capsys.readouterr()
    first = LocalLedger(tmp_path / "first")
    first.acquire("joby")
    first.record("joby", "e1", Step.PLANNED, version="1")
    first.record("joby", "e1", Step.SUBMITTED)
    first.record("joby", "e1", Step.RUNNING, job_id="c" * 32, rest_url="http://127.0.0.1:1")
    assert main(["status", "joby", "--ledger-dir", str(tmp_path / "first")]) == 0
    assert "watching" not in capsys.readouterr().out


def test_unknown_job_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "nope", "--ledger-dir", str(tmp_path)]) == 2
    assert "unknown job 'nope'" in capsys.readouterr().err


def test_ledger_copy_between_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ledger(tmp_path / "a")
    args = ["ledger", "copy", "jobx", "--from", str(tmp_path / "a"), "--to", str(tmp_path / "b")]
    busy = LocalLedger(tmp_path / "b")
    with busy.holding("jobx"):  # a deployment of the job runs against the destination
        assert main(args) == 7
    assert not (tmp_path / "b" / "jobx.jsonl").exists()
    capsys.readouterr()
    assert main(args) == 0
    assert "5 entries of jobx copied" in capsys.readouterr().out
    copied = (tmp_path / "b" / "jobx.jsonl").read_text()
    assert copied == (tmp_path / "a" / "jobx.jsonl").read_text()
    assert main(args) == 2
    assert "already records 5 entries" in capsys.readouterr().err
    assert main(["ledger", "copy", "nope", "--from", str(tmp_path / "a"), "--to", "x"]) == 2
    assert not list(tmp_path.glob("*/jobx.lease"))  # both leases given back
