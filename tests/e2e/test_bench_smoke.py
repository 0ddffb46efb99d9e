"""Smoke runs of every benchmark under bench/: each runs at a tiny size and prints its RESULT.

A benchmark that breaks (an API it calls changed, a job it starts fails) fails here rather than
the next time someone measures with it. Runs this small measure nothing: the figures are not
checked, only that the script exits 0 and prints its ``RESULT <name> flowship=... baseline=...
ratio=...`` line. ``bench/handrun_submit.py`` is the hand-run baseline's ``flink run -py``
entry point: the upgrade_gap run submits v2 through it (``handover_gap.py`` reuses
upgrade_gap's input, output watch and upgrade). ``diff_rate.py`` prints ``RESULT diff``
(the name its issue gives it). ``baseline_job.py`` and
``pickled_state_job.py`` are the jobs throughput and state_overhead run.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tail

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
RESULT = re.compile(r"^RESULT (\S+) flowship=\S+ baseline=\S+ ratio=\S+$", re.MULTILINE)


def run_bench(script: str, *args: str, timeout: float, name: str | None = None) -> str:
    """Run ``bench/<script>``; assert exit 0 and one RESULT line (``name``, else the script's
    own); its output."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # an interrupt lets the benchmark stop the brokers and clusters it started
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"{script} did not finish in {timeout:.0f}s:\n{tail(out)}")
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{tail(out)}"
    assert RESULT.findall(out) == [name or Path(script).stem], tail(out)
    return out


@pytest.mark.timeout(120)
def test_check_scale() -> None:
    run_bench("check_scale.py", timeout=90)


@pytest.mark.timeout(120)
def test_migrated_read() -> None:
    run_bench("migrated_read.py", timeout=90)


@pytest.mark.kafka
@pytest.mark.timeout(240)
def test_diff_rate() -> None:
    out = run_bench("diff_rate.py", "--records", "2000", "--runs", "1", timeout=200, name="diff")
    assert "run 1: flowship" in out and "plain consumer" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.timeout(420)
def test_flags() -> None:
    out = run_bench(
        "flags.py", "--records", "2000", "--runs", "1", "--set-runs", "1", "--no-warm-up",
        timeout=360,
    )
    assert "flag set end to end" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.timeout(360)
def test_throughput() -> None:
    out = run_bench(
        "throughput.py",
        "--records", "2000", "--runs", "1", "--defaults-records", "0", "--no-warm-up",
        timeout=300,
    )
    assert "run 1: flowship" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.timeout(420)
def test_startup() -> None:
    out = run_bench("startup.py", "--runs", "1", timeout=360)
    assert "the archive saves" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.timeout(360)
def test_state_overhead() -> None:
    out = run_bench(
        "state_overhead.py", "--records", "2000", "--runs", "1", "--no-warm-up", timeout=300
    )
    assert "run 1: flowship state" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_upgrade_gap(flink_session_cluster) -> None:
    # the suite's session cluster (the benchmark cancels the jobs it started on it when done);
    # each run starts a broker of its own: the example job's topic names are fixed
    # (the local target's gap, which it also prints, is skipped: the local upgrade path is
    # tested end to end elsewhere, and it would double this run's time)
    out = run_bench(
        "upgrade_gap.py",
        "--runs", "1", "--warm-up-s", "3", "--skip-local",
        "--target", flink_session_cluster.rest_url,
        timeout=840,
    )
    assert "run 1: flowship" in out and "hand-run" in out, tail(out)


@pytest.mark.kafka
@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_handover_gap(flink_session_cluster) -> None:
    # a dark launch promoted to every partition, against a savepoint upgrade, on the suite's
    # session cluster (each run cancels the jobs it started; each starts a broker of its own)
    out = run_bench(
        "handover_gap.py",
        "--runs", "1", "--warm-up-s", "3", "--target", flink_session_cluster.rest_url,
        timeout=840,
    )
    assert "run 1: promote" in out and "savepoint upgrade" in out, tail(out)
