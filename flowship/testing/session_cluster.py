"""A real Apache Flink standalone session cluster, from the scripts the pyflink wheel ships.

One JobManager and one TaskManager on loopback, with a private conf dir, free ports and this
interpreter as the Python executable; stopped by the pids the Flink daemon scripts record::

    with SessionCluster(workdir) as cluster:
        cluster.rest_url   # "http://127.0.0.1:PORT"
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import pyflink

from flowship.deploy.rest import FlinkRest
from flowship.errors import ClusterError, ServiceError
from flowship.testing._proc import LOOPBACK, free_port, pid_alive, stop_pid, wait_until

FLINK_HOME = Path(pyflink.__file__).resolve().parent


class SessionCluster:
    """A standalone Flink session cluster (JobManager + TaskManager daemons) on loopback."""

    def __init__(self, workdir: Path, *, slots: int = 4, tm_memory: str = "2048m") -> None:
        self.workdir = Path(workdir)
        self.rest_port = free_port()
        self.slots = slots
        self.tm_memory = tm_memory
        self.conf_dir = self.workdir / "conf"
        self.log_dir = self.workdir / "log"
        self.pid_dir = self.workdir / "pids"
        self.lib_dir = self.workdir / "lib"
        self._started = False

    @property
    def rest_url(self) -> str:
        """The JobManager's REST URL (what ``--target`` takes)."""
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def rest(self) -> FlinkRest:
        """A REST client for this cluster."""
        return FlinkRest(self.rest_url)

    def _write_conf(self) -> None:
        from flowship.job._runtime import LOCAL_JVM_OPTIONS

        shutil.rmtree(self.conf_dir, ignore_errors=True)
        shutil.copytree(FLINK_HOME / "conf", self.conf_dir)
        # a JVM that crashes writes its report with the cluster's logs, not into the caller's
        # working directory (a source tree, as often as not)
        java_opts = (
            f"{_default_java_opts(self.conf_dir / 'config.yaml')} "
            f"-XX:ErrorFile={self.log_dir}/hs_err_pid%p.log "
            # what the local target gives its JVM
            f"{' '.join(LOCAL_JVM_OPTIONS)}"
        ).strip()
        conf = {
            "env.java.opts.all": java_opts,
            "jobmanager.rpc.address": LOOPBACK,
            "jobmanager.rpc.port": free_port(),
            "jobmanager.bind-host": LOOPBACK,
            "jobmanager.memory.process.size": "1024m",
            "taskmanager.bind-host": LOOPBACK,
            "taskmanager.host": LOOPBACK,
            "taskmanager.rpc.port": free_port(),
            "taskmanager.data.port": free_port(),
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self.tm_memory,
            "rest.address": LOOPBACK,
            "rest.bind-address": LOOPBACK,
            "rest.port": self.rest_port,
            "blob.server.port": free_port(),
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "parallelism.default": 1,
        }
        # flat keys are valid Flink 2 YAML; values are plain scalars
        lines = [f"{k}: {_yaml_scalar(v)}" for k, v in conf.items()]
        (self.conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")
        (self.conf_dir / "masters").write_text(f"{LOOPBACK}:{self.rest_port}\n")
        (self.conf_dir / "workers").write_text(f"{LOOPBACK}\n")

    def _write_lib(self) -> None:
        """lib/ = the wheel's lib/ plus opt/flink-python, as PyFlink session clusters need.

        With flink-python on the job's classpath only, each job loads PEMJA (thread mode)
        through its own class loader, and the next job on a TaskManager fails on Java 17
        (NoSuchFieldException: loadedLibraryNames). The official PyFlink images move the jar
        into lib/ for this reason.
        """
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        self.lib_dir.mkdir(parents=True)
        jars = [*(FLINK_HOME / "lib").glob("*.jar"), *(FLINK_HOME / "opt").glob("flink-python-*")]
        for jar in jars:
            (self.lib_dir / jar.name).symlink_to(jar)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FLINK_HOME": str(FLINK_HOME),
                "FLINK_LIB_DIR": str(self.lib_dir),
                "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(self.log_dir),
                "FLINK_PID_DIR": str(self.pid_dir),
            }
        )
        return env

    def _daemon(self, script: str, action: str) -> None:
        done = subprocess.run(
            ["bash", str(FLINK_HOME / "bin" / script), action],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            msg = (
                f"{script} {action} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
            raise ServiceError(msg)

    def pids(self) -> list[int]:
        """Pids of the JobManager and TaskManager daemons, from their pid files."""
        pids: list[int] = []
        for pid_file in sorted(self.pid_dir.glob("*.pid")):
            pids += [int(x) for x in pid_file.read_text().split() if x.isdigit()]
        return pids

    def taskmanager_pids(self) -> list[int]:
        """Pids of the TaskManagers that run now (``taskmanager.sh start`` adds one each)."""
        pids: list[int] = []
        for pid_file in sorted(self.pid_dir.glob("*taskexecutor*.pid")):
            pids += [int(x) for x in pid_file.read_text().split() if x.isdigit()]
        return [pid for pid in pids if pid_alive(pid)]

    def kill_taskmanagers(self) -> list[int]:
        """SIGKILL every TaskManager, as a host that dies takes its one down; their pids."""
        pids = self.taskmanager_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 30, f"TaskManagers {pids} to die")
        return pids

    def start_taskmanager(self) -> None:
        """Start one more TaskManager (after :meth:`kill_taskmanagers`: a replacement)."""
        self._daemon("taskmanager.sh", "start")

    def start(self, timeout: float = 90.0) -> SessionCluster:
        """Start JobManager and TaskManager; wait until the REST API reports a free slot."""
        for d in (self.log_dir, self.pid_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self._write_lib()
        self._started = True
        try:
            self._daemon("jobmanager.sh", "start")
            self._daemon("taskmanager.sh", "start")
            wait_until(
                self._ready,
                timeout,
                f"Flink session cluster at {self.rest_url}",
                self._newest_log(),
            )
        except ServiceError:
            self.stop()
            raise
        return self

    def _newest_log(self) -> Path | None:
        logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

    def _ready(self) -> bool:
        try:
            overview = self.rest.overview()
        except ClusterError:
            return False
        return int(overview.get("slots-available", 0)) >= 1

    def stop(self) -> None:
        """Stop every daemon by its recorded pid (SIGTERM, then SIGKILL), also after failures."""
        if not self._started:
            return
        for pid in self.pids():
            if pid_alive(pid):
                stop_pid(pid, timeout=20, group=False)
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink(missing_ok=True)
        self._started = False

    def __enter__(self) -> SessionCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _default_java_opts(config_yaml: Path) -> str:
    """The JVM --add-opens flags the shipped config.yaml sets (Flink needs them on Java 17)."""
    for line in config_yaml.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("all: --add-"):
            return stripped.removeprefix("all: ")
    return ""


def _yaml_scalar(value: object) -> str:
    text = str(value)
    return (
        f'"{text}"'
        if any(c in text for c in ":#{}[],&*!|>'\"%@`") and not text.startswith("--")
        else text
    )
