"""pytest plugin for flowship jobs: real Kafka and real Flink, started by the fixtures.

Loaded automatically (``pytest11`` entry point) when flowship is installed. Fixtures:

``kafka_broker``            session-scoped real KRaft broker on loopback
``fresh_kafka_broker``      a broker of the test's own (for tests that kill it or need clean topics)
``flink_session_cluster``   session-scoped standalone Flink session cluster from the pyflink wheel

Everything started is stopped by pid at teardown, also when the test fails.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flowship.testing.kafka_broker import KafkaBroker
    from flowship.testing.session_cluster import SessionCluster


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM would end the interpreter without running fixture finalizers, leaving the broker
    # and cluster processes behind; turn it into an interrupt so teardown stops them by pid
    msg = f"signal {signum}"
    raise KeyboardInterrupt(msg)


def pytest_configure(config: pytest.Config) -> None:
    """Make SIGTERM tear the session down like Ctrl-C (fixtures stop what they started)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _terminate)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft) shared by the test session."""
    from flowship.testing.kafka_broker import KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def fresh_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft) of this test's own."""
    from flowship.testing.kafka_broker import KafkaBroker

    broker = KafkaBroker(tmp_path / "kafka")
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def flink_session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionCluster]:
    """A real Flink standalone session cluster (JobManager + TaskManager) on loopback."""
    from flowship.testing.session_cluster import SessionCluster

    cluster = SessionCluster(tmp_path_factory.mktemp("flink"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
