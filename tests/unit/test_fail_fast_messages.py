"""What new users get wrong first fails fast and says so: a schema file with a syntax error, a
Kafka address nothing listens on, or one where something listens but never answers (a wrong
port, a hung broker); librdkafka's own log lines go through flowship's logging, de-duplicated
(no JVM here; the job-level tests are tests/integration/test_fail_fast_kafka.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

import flowship as fs
from flowship import _kafka
from flowship.cli import EXIT_BAD_INPUT, main
from flowship.deploy.engine import Target
from flowship.errors import ClusterError, SchemaError
from flowship.testing._proc import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_JOB = ROOT / "examples" / "click_sessions" / "job.py"

# a comma missing at the end of line 5: the error is reported at line 6, column 5
BROKEN_AVSC = """\
{
  "type": "record",
  "name": "Session",
  "fields": [
    {"name": "clicks", "type": "int"}
    {"name": "start", "type": "long"}
  ]
}
"""

JOB = """\
from pathlib import Path

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: Path(__file__).parent / "session.avsc"})
clicks = fs.KafkaSource(uid="clicks", topic="clicks", schema=%r)
job = fs.Job("broken-schema", version="1", sources=[clicks], sinks=[])

if __name__ == "__main__":
    job.main()
"""

CLICK = {"type": "record", "name": "Click", "fields": [{"name": "user", "type": "string"}]}


def job_with_schema(tmp_path: Path, avsc: str) -> Path:
    (tmp_path / "session.avsc").write_text(avsc)
    script = tmp_path / "job.py"
    script.write_text(JOB % (CLICK,))
    return script


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False, env=env
    )


# -- a state schema file that does not parse --------------------------------------------------


def test_schema_file_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "session.avsc"
    path.write_text(BROKEN_AVSC)
    with pytest.raises(SchemaError) as caught:
        fs.StateSchema("session", versions={1: path})
    text = str(caught.value)
    assert text.startswith("state schema 'session' version 1: ")
    assert str(path) in text
    assert "not valid JSON: Expecting ',' delimiter at line 6, column 5" in text
    assert "fix the JSON syntax there" in text


def test_schema_file_that_is_not_avro_names_the_file_and_the_type(tmp_path: Path) -> None:
    path = tmp_path / "session.avsc"
    path.write_text(json.dumps({"type": "record", "name": "S", "fields": [
        {"name": "clicks", "type": "integer"}]}))
    with pytest.raises(SchemaError, match=r"unknown type 'integer'; use an Avro type") as caught:
        fs.StateSchema("session", versions={1: path})
    assert f"state schema 'session' version 1 ({path})" in str(caught.value)


def test_job_script_with_a_broken_schema_file_says_flowship_and_exits_2(tmp_path: Path) -> None:
    script = job_with_schema(tmp_path, BROKEN_AVSC)
    done = run(str(script), "--manifest")
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    first, second = done.stderr.strip().splitlines()
    assert first.startswith("flowship: state schema 'session' version 1: ")
    assert f"{tmp_path / 'session.avsc'} is not valid JSON" in first
    assert "line 6, column 5" in first
    assert second == (
        f"flowship: raised at {script}, line 5 (FLOWSHIP_TRACEBACK=1 shows the traceback)"
    )


def test_flowship_traceback_keeps_pythons_traceback(tmp_path: Path) -> None:
    script = job_with_schema(tmp_path, BROKEN_AVSC)
    import os

    done = run(str(script), "--manifest", env={**os.environ, "FLOWSHIP_TRACEBACK": "1"})
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "flowship.errors.SchemaError: state schema 'session'" in done.stderr


def test_other_errors_of_a_script_keep_their_traceback(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text("import flowship\nraise RuntimeError('not flowship')\n")
    done = run(str(script))
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: not flowship" in done.stderr
    assert "flowship: " not in done.stderr


def test_flowship_check_gives_the_jobs_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = job_with_schema(tmp_path, BROKEN_AVSC)
    assert main(["check", str(EXAMPLE_JOB), str(script)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(
        f"flowship check: error: {script}: state schema 'session' version 1: the Avro schema "
        f"file {tmp_path / 'session.avsc'} is not valid JSON: Expecting ',' delimiter at line 6, "
        "column 5"
    ), err
    assert "Traceback" not in err and "stderr tail" not in err


# -- Kafka that does not answer ------------------------------------------------------------


def test_check_kafka_names_the_address_nothing_listens_on() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        _kafka.check_kafka(bootstrap, {"clicks": "source 'clicks'"}, timeout=2.0)
    assert time.monotonic() - started < 10
    text = str(caught.value)
    assert f"Kafka at {bootstrap} did not answer within 2 s" in text
    assert "Connection refused" in text
    assert "--kafka-bootstrap" in text and "nothing was started or recorded" in text


def test_repeated_client_log_lines_are_logged_once_per_window() -> None:
    client_log = _kafka._ClientLog(window_s=60.0)
    line = "[thrd:127.0.0.1:9/bootstrap]: Connect to ipv4#127.0.0.1:9 failed (after %dms in state)"
    with structlog.testing.capture_logs() as logs:
        for i in range(200):
            client_log.log(40, "%s [%s] %s", "FAIL", f"rdkafka#consumer-{i % 3}", line % i)
        client_log.log(40, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", line.replace(":9", ":10"))
    assert [(e["event"], e["log_level"], e["facility"]) for e in logs] == [
        ("kafka.client", "error", "FAIL")
    ] * 2
    assert ":10" in logs[1]["message"]  # another address is another line

    client_log.window_s = 0.0  # the window has passed: the next one says how many were left out
    with structlog.testing.capture_logs() as logs:
        client_log.log(40, "%s [%s] %s", "FAIL", "rdkafka#consumer-0", line % 7)
    assert logs[0]["repeated"] == 199


CLIENT_AGAINST_NOTHING = """
import sys, time
from flowship._log import configure_for_cli
from flowship import _kafka
configure_for_cli()
consumer = _kafka.consumer(sys.argv[1], **{"group.id": "g"})
producer = _kafka.producer(sys.argv[1])
producer.produce("t", b"x")
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    consumer.poll(0.2)
    producer.poll(0.2)
admin = _kafka.admin_client(sys.argv[1])
try:
    admin.list_topics(timeout=2)
except Exception:
    pass
_kafka.serve_logs(admin)
consumer.close()
"""


def test_clients_against_a_dead_broker_print_a_few_lines_not_hundreds(tmp_path: Path) -> None:
    script = tmp_path / "clients.py"
    script.write_text(textwrap.dedent(CLIENT_AGAINST_NOTHING))
    done = run(str(script), f"127.0.0.1:{free_port()}")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    raw = [line for line in lines if line.startswith("%")]  # librdkafka's own stderr format
    assert raw == [], raw[:3]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    client_lines = [e for e in events if e["event"] == "kafka.client"]
    assert 1 <= len(client_lines) <= 5, client_lines
    assert all("Connection refused" in e["message"] or "brokers are down" in e["message"]
               for e in client_lines), client_lines


# -- the check comes before anything is recorded or stopped --------------------------------


def test_upgrade_checks_before_a_resumed_deployment_records_anything(tmp_path: Path) -> None:
    """A deployer died at PLANNED of v2; the rerun's Kafka check fails: the ledger is as it was.

    (Before, the rerun first recorded that deployment FAILED, and a rerun that died while
    stopping the old version took its savepoint again, before the check.)
    """
    from flowship.deploy.ledger import LocalLedger
    from flowship.deploy.machine import Step
    from flowship.deploy.upgrade import prepare_upgrade

    ledger = LocalLedger(tmp_path / "ledger")
    with ledger.holding("jobx"):
        ledger.record("jobx", "d1", Step.PLANNED, version="1", manifest={}, script="v1.py")
        ledger.record("jobx", "d1", Step.SUBMITTED, rest_url="http://127.0.0.1:1")
        ledger.record("jobx", "d1", Step.RUNNING, job_id="j1", rest_url="http://127.0.0.1:1")
        ledger.record("jobx", "d2", Step.PLANNED, version="2", manifest={}, script="v2.py")
    before = ledger.entries("jobx")

    def kafka_check() -> None:
        raise ClusterError("Kafka at 127.0.0.1:9 did not answer")

    with pytest.raises(ClusterError, match=r"Kafka at 127\.0\.0\.1:9 "):
        prepare_upgrade(ledger, "jobx", "2", {}, "v2.py", tmp_path / "sp", prepare=kafka_check)
    assert ledger.entries("jobx") == before
    assert not (tmp_path / "ledger" / "jobx.lease").exists()


# -- Kafka where something listens but never answers ---------------------------------------


@contextmanager
def silent_listener() -> Iterator[str]:
    """A loopback port that accepts every connection and never writes a byte; yields its address.

    What a wrong port (another service's) or a hung broker looks like to a client: the TCP
    connection is made, no answer comes. Closed, with every connection it accepted, on exit.
    """
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        closing.set()
        thread.join(timeout=5)
        server.close()
        for conn in accepted:
            conn.close()


def test_the_silent_listener_never_answers_and_is_closed_also_when_a_test_fails() -> None:
    with pytest.raises(RuntimeError) as failed, silent_listener() as address:
        host, port = address.split(":")
        conn = socket.create_connection((host, int(port)), timeout=2)
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(1)  # accepted, and nothing is ever written
        raise RuntimeError("the test failed")
    # the failure's traceback keeps the listener's frame alive: closed all the same
    assert failed.traceback
    with conn:
        conn.settimeout(2)
        assert conn.recv(1) == b""  # the connection it accepted is closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()


def test_check_kafka_says_something_listens_there_but_does_not_answer() -> None:
    with silent_listener() as bootstrap:
        started = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            _kafka.check_kafka(bootstrap, {"clicks": "source 'clicks'"}, timeout=2.0)
        took = time.monotonic() - started
    assert took < 6, f"took {took:.1f} s"
    text = str(caught.value)
    assert f"Kafka at {bootstrap} did not answer within 2 s" in text
    assert f"{bootstrap} accepts connections but sent no answer to Kafka's requests" in text
    assert "KafkaError{" not in text and "transport failure" not in text  # librdkafka's words
    assert "--kafka-bootstrap" in text and "nothing was started or recorded" in text


def _running_v1(state: Path) -> list[Any]:
    """The ledger of a running click-sessions version 1 (its Flink job is never asked)."""
    from flowship.deploy.ledger import LocalLedger
    from flowship.deploy.machine import Step

    ledger = LocalLedger(state / "ledger")
    with ledger.holding("click-sessions"):
        ledger.record(
            "click-sessions", "d1", Step.PLANNED, version="1", manifest={}, script=str(EXAMPLE_JOB)
        )
        ledger.record("click-sessions", "d1", Step.SUBMITTED, rest_url="http://127.0.0.1:1")
        ledger.record(
            "click-sessions", "d1", Step.RUNNING, job_id="a" * 32, rest_url="http://127.0.0.1:1"
        )
    return ledger.entries("click-sessions")


def test_dry_run_against_a_silent_broker_fails_in_seconds_recording_nothing(
    tmp_path: Path,
) -> None:
    """``python job.py --dry-run``: exit 4 naming the address; no ledger entry, no lease."""
    from flowship.deploy.exits import EXIT_UNREACHABLE
    from flowship.deploy.ledger import LocalLedger

    state = tmp_path / "state"
    before = _running_v1(state)
    with silent_listener() as bootstrap:
        started = time.monotonic()
        done = run(
            str(EXAMPLE_JOB), "--dry-run", "--kafka-bootstrap", bootstrap, "--state-dir", str(state)
        )
        took = time.monotonic() - started
    assert done.returncode == EXIT_UNREACHABLE == 4, done.stderr
    assert took < 30, f"took {took:.0f} s"  # the check's 10 s, and Python's start-up
    assert (
        f"flowship: Kafka at {bootstrap} did not answer within 10 s ({bootstrap} accepts "
        "connections but sent no answer to Kafka's requests"
    ) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "dry_run.checked" not in done.stderr  # the gate was never reached
    assert LocalLedger(state / "ledger").entries("click-sessions") == before
    assert not (state / "ledger" / "click-sessions.lease").exists()
    assert not list(state.glob("click-sessions/dry-runs/*")), "the dry run went on"


class CheckedTarget(Target):
    """A target whose prepare is the local target's first step: the Kafka check (2 s here)."""

    def __init__(self, bootstrap: str) -> None:
        self.rest_url = "http://127.0.0.1:1"
        self.bootstrap = bootstrap
        self.started = False

    def prepare(self) -> None:
        _kafka.check_kafka(self.bootstrap, {"clicks": "source 'clicks-source'"}, timeout=2.0)

    def start(self, restore: str | None, deployment: str) -> str:
        self.started = True
        return "b" * 32


def test_upgrade_from_savepoint_against_a_silent_broker_stops_and_records_nothing(
    tmp_path: Path,
) -> None:
    """``--upgrade-from savepoint``'s engine: the check fails before the gate or the stop."""
    from flowship.deploy.engine import Engine, Policy, Release
    from flowship.deploy.exits import EXIT_UNREACHABLE, exit_code_for
    from flowship.deploy.ledger import LocalLedger

    state = tmp_path / "state"
    before = _running_v1(state)
    ledger = LocalLedger(state / "ledger")
    with silent_listener() as bootstrap:
        target = CheckedTarget(bootstrap)
        release = Release("click-sessions", "2", {"version": "2"}, str(EXAMPLE_JOB))
        engine = Engine(ledger, release, target, Policy(state))
        started = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            engine.upgrade()
        took = time.monotonic() - started
    assert took < 6, f"took {took:.1f} s"
    assert exit_code_for(caught.value) == EXIT_UNREACHABLE == 4
    assert f"Kafka at {bootstrap} did not answer" in str(caught.value)
    assert f"{bootstrap} accepts connections but sent no answer" in str(caught.value)
    assert not target.started
    assert ledger.entries("click-sessions") == before
    assert ledger.held("click-sessions") is None
    assert not (state / "ledger" / "click-sessions.lease").exists()
    assert not list(state.glob("click-sessions/savepoints/*")), "a savepoint was taken"
