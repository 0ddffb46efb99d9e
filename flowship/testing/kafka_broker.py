"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback.

Started from the broker jars (a checkout's ``make jars``, or fetched once into a per-user cache:
:mod:`flowship.testing.broker_jars`); no Docker, no mocks.
Used by flowship's pytest plugin, the demo and the benchmarks::

    with KafkaBroker(workdir) as broker:
        broker.bootstrap   # "127.0.0.1:PORT"
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from types import TracebackType

from flowship.errors import ServiceError
from flowship.testing._proc import LOOPBACK, free_port, port_open, spawn, stop_pid, wait_until
from flowship.testing.broker_jars import broker_classpath

# a broker for tests and demos: small heap, and the quick JIT compiler alone (it starts in
# about half the CPU time; a few thousand records a second need no more)
_JAVA_OPTS = [
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]


def new_cluster_id() -> str:
    """A KRaft cluster id (a uuid, URL-safe base64) that does not start with '-'.

    kafka-storage's argument parser reads an id starting with '-' as an option and fails.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """One KRaft broker+controller process, formatted in ``workdir``, stopped by its pid.

    ``kill()`` and ``start()`` again keep the same ports and log directory, so a test can take
    the broker away mid-stream and bring it back with its data.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.log = self.workdir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._classpath = broker_classpath()
        self._java = shutil.which("java") or "java"
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value for clients."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def _properties(self) -> Path:
        path = self.workdir / "server.properties"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},"
            f"CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # no fsync per message: a broker killed with SIGKILL loses nothing the kernel holds,
            # and a disk that syncs slowly would slow every test down
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _format(self, props: Path) -> None:
        cluster_id = new_cluster_id()
        cmd = [
            self._java,
            "-XX:TieredStopAtLevel=1",
            "-cp",
            self._classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = (
                f"formatting the Kafka log directory in {self.workdir} failed "
                f"(exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
            raise ServiceError(msg)
        self._formatted = True

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Start the broker (formatting its storage the first time) and wait until it serves."""
        if self.pid is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        if not self._formatted:
            self._format(props)
        env = dict(os.environ)
        env.pop("KAFKA_OPTS", None)
        argv = [self._java, *_JAVA_OPTS, "-cp", self._classpath, "kafka.Kafka", str(props)]
        self._proc = spawn(argv, self.log, env)
        proc = self._proc
        try:
            wait_until(
                self._ready,
                timeout,
                f"Kafka broker on {self.bootstrap}",
                self.log,
                alive=lambda: proc.poll() is None,
            )
        except ServiceError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        from flowship._kafka import admin_client

        # silent while the broker boots: its connection-refused lines are expected here
        admin = admin_client(self.bootstrap, log_level=0, logger=_QUIET)
        try:
            md = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(md.brokers)

    def kill(self) -> None:
        """Kill the broker with SIGKILL (a crash, not a clean shutdown). Data stays on disk."""
        if self._proc is not None:
            import signal

            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=30)
            self._proc = None

    def stop(self) -> None:
        """Stop the broker by its pid (SIGTERM, then SIGKILL)."""
        if self._proc is not None:
            stop_pid(self._proc.pid, timeout=30)
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _QuietLogger:
    """Swallow librdkafka's connection-refused chatter while the broker boots."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None

    def __getattr__(self, name: str) -> object:
        return self.log


_QUIET = _QuietLogger()
