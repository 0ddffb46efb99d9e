"""A wrong Kafka address or a missing source topic fails a deployment before anything happens.

Tried as a new user would: ``python job.py --kafka-bootstrap 127.0.0.1:9 --bounded`` used to log
``job.start`` and ``job.running`` and hang (a job with flags: fail after 30 s with hundreds of
librdkafka lines on stderr). Now the deployer asks Kafka first: a clear error naming the address
(exit 4) or the topic (exit 2) within seconds, nothing in the ledger, the lease given back, and
for ``--upgrade-from savepoint`` / ``--dry-run`` the running version untouched.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT, setup_topics, tail

from flowship.deploy.ledger import LocalLedger
from flowship.deploy.rest import FlinkRest
from flowship.testing._proc import free_port
from flowship.testing.jobs import JobProcess

pytestmark = [pytest.mark.timeout(300)]

JOBS = Path(__file__).parent / "jobs"
TYPO_V2 = JOBS / "typo_topic_v2.py"
#: a job without flags (no control plane): before the check, nothing talked to Kafka before the
#: job ran, and it hung
STATELESS = ROOT / "tests" / "e2e" / "jobs" / "stateless_v1.py"


def run_to_exit(script: Path, bootstrap: str, state: Path, *extra: str,
                timeout: float = 90.0) -> tuple[int, str, float]:
    """Run a job script to its exit (stopped by pid, with its JVM, if it does not exit)."""
    proc = JobProcess(script, bootstrap, state, *extra)
    proc.log = state.parent / f"{script.stem}-{time.monotonic_ns()}.log"
    started = time.monotonic()
    proc.start()
    try:
        code = proc.wait(timeout=timeout)
    except Exception:
        pytest.fail(f"{script.name} did not exit within {timeout:.0f} s:\n{tail(proc.output())}")
    finally:
        proc.stop()
    return code, proc.output(), time.monotonic() - started


def librdkafka_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "rdkafka" in line]


def assert_nothing_recorded(state: Path, job: str) -> None:
    ledger = LocalLedger(state / "ledger")
    assert ledger.entries(job) == [], ledger.entries(job)
    assert not (state / "ledger" / f"{job}.lease").exists(), "the lease was not given back"


@pytest.mark.parametrize("script", [EXAMPLE / "job.py", STATELESS],
                         ids=["with-flags", "without-flags"])
def test_kafka_address_nothing_listens_on_fails_in_seconds(script: Path, tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    code, output, took = run_to_exit(script, bootstrap, state, "--bounded")
    assert code == 4, tail(output)
    assert took < 25, f"took {took:.0f} s"
    assert f"flowship: Kafka at {bootstrap} did not answer within 10 s" in output, tail(output)
    assert "Connection refused" in output and "--kafka-bootstrap" in output
    assert "job.start" not in output and "job.running" not in output
    job = "click-sessions" if script.name == "job.py" else "click-copies"
    assert_nothing_recorded(state, job)
    # librdkafka's lines come through flowship's logging, de-duplicated: a few, not hundreds
    noise = librdkafka_lines(output)
    assert len(noise) <= 3, noise[:10]
    assert not [line for line in noise if line.startswith("%")], noise[:3]


@pytest.mark.kafka
def test_missing_source_topic_fails_naming_it(kafka_broker, tmp_path: Path) -> None:
    setup_topics(kafka_broker.bootstrap)  # everything but the typo'd "clickz"
    state = tmp_path / "state"
    code, output, took = run_to_exit(TYPO_V2, kafka_broker.bootstrap, state, "--bounded")
    assert code == 2, tail(output)
    assert took < 60, f"took {took:.0f} s"
    assert (
        f"flowship: missing on Kafka at {kafka_broker.bootstrap}: source 'clicks-source' of job "
        "'click-sessions' reads topic 'clickz'"
    ) in output, tail(output)
    assert "job.start" not in output
    assert_nothing_recorded(state, "click-sessions")


@pytest.mark.kafka
def test_upgrade_or_dry_run_to_a_broken_v2_leaves_v1_running(kafka_broker,
                                                             tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    setup_topics(bootstrap)
    state = tmp_path / "state"
    ledger = LocalLedger(state / "ledger")
    v1 = JobProcess(EXAMPLE / "job.py", bootstrap, state).start()
    try:
        deadline = time.monotonic() + 180
        while ledger.current("click-sessions") is None:
            assert time.monotonic() < deadline, tail(v1.output())
            assert v1.running(), tail(v1.output())
            time.sleep(0.5)
        before = ledger.entries("click-sessions")
        deployment, data = ledger.current("click-sessions")  # type: ignore[misc]
        rest = FlinkRest(data["rest_url"])

        runs = {
            "upgrade, topic typo": (TYPO_V2, bootstrap, ["--upgrade-from", "savepoint"], 2),
            "dry run, topic typo": (TYPO_V2, bootstrap, ["--dry-run"], 2),
            "upgrade, no broker": (EXAMPLE / "job_v2.py", f"127.0.0.1:{free_port()}",
                                   ["--upgrade-from", "savepoint"], 4),
        }
        for what, (script, kafka, extra, expected) in runs.items():
            code, output, _ = run_to_exit(script, kafka, state, *extra)
            assert code == expected, f"{what}:\n{tail(output)}"
            assert ("'clickz'" if expected == 2 else f"Kafka at {kafka}") in output, tail(output)
            # v1 untouched: still the same Flink job, RUNNING, and the ledger as it was
            assert v1.running(), f"{what}: v1 exited\n{tail(v1.output())}"
            assert rest.job(data["job_id"])["state"] == "RUNNING", what
            assert ledger.entries("click-sessions") == before, what
            assert ledger.current("click-sessions") == (deployment, data), what
            assert not (state / "ledger" / "click-sessions.lease").exists(), what
        assert not list(state.glob("click-sessions/savepoints/*")), "a savepoint was taken"
        assert not list(state.glob("click-sessions/dry-runs/*")), "the dry run went on"
    finally:
        v1.stop()
