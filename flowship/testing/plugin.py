"""pytest plugin for flowship jobs: real Kafka and real Flink, started by the fixtures.

Loaded automatically (``pytest11`` entry point) when flowship is installed. Fixtures:

``kafka_broker``            session-scoped real KRaft broker on loopback
``fresh_kafka_broker``      a broker of the test's own (for tests that kill it or need clean
                            topics); the next one starts in the background while a test runs
``flink_session_cluster``   session-scoped standalone Flink session cluster from the pyflink wheel

Everything started is stopped by pid at teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


class _FreshBrokers:
    """Brokers of a test's own, each started while the test before it runs.

    A broker takes seconds to start; the next one starts in the background as soon as one is
    handed out, so a test waits for its broker only when the one before it was quicker.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fresh-broker")
        self._next: Future[KafkaBroker] | None = None

    def _start(self) -> KafkaBroker:
        from flowship.testing.kafka_broker import KafkaBroker

        self._count += 1
        return KafkaBroker(self.root / f"kafka{self._count}").start()

    def take(self) -> KafkaBroker:
        """A started broker nobody else uses (the caller stops it)."""
        taken = self._next if self._next is not None else self._starter.submit(self._start)
        self._next = self._starter.submit(self._start)
        return taken.result()

    def close(self) -> None:
        """Stop the broker started for a test that did not come."""
        if self._next is not None:
            with contextlib.suppress(Exception):
                self._next.result().stop()
        self._starter.shutdown(wait=True)


@pytest.fixture(scope="session")
def _fresh_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_FreshBrokers]:
    brokers = _FreshBrokers(tmp_path_factory.mktemp("fresh-kafka"))
    try:
        yield brokers
    finally:
        brokers.close()


@pytest.fixture
def fresh_kafka_broker(_fresh_brokers: _FreshBrokers) -> Iterator[KafkaBroker]:
    """A real Kafka broker (KRaft) of this test's own."""
    broker = _fresh_brokers.take()
    try:
        yield broker
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
