"""Run flowship job scripts as real processes (mini-cluster inside), for tests and demos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

from flowship.testing._proc import free_port, spawn, stop_pid


def job_command(script: Path | str, bootstrap: str, state_dir: Path, *extra: str) -> list[str]:
    """The command line that runs ``script`` on the embedded mini-cluster against ``bootstrap``."""
    return [
        sys.executable,
        str(script),
        "--kafka-bootstrap",
        bootstrap,
        "--state-dir",
        str(state_dir),
        "--rest-port",
        str(free_port()),
        *extra,
    ]


def run_job(
    script: Path | str, bootstrap: str, state_dir: Path, *extra: str, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run a job to completion (pass ``--bounded`` to stop at the latest offsets)."""
    return subprocess.run(
        job_command(script, bootstrap, state_dir, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class JobProcess:
    """A job running in the background (unbounded), stopped by its pid on exit."""

    def __init__(
        self,
        script: Path | str,
        bootstrap: str,
        state_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = job_command(script, bootstrap, state_dir, *extra)
        self.log = Path(state_dir) / "job.log"
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def rest_url(self) -> str:
        """REST URL of the job's embedded mini-cluster."""
        return f"http://127.0.0.1:{self.argv[self.argv.index('--rest-port') + 1]}"

    @property
    def pid(self) -> int | None:
        """The job process's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> JobProcess:
        """Start the job process."""
        self._proc = spawn(self.argv, self.log, self.env)
        return self

    def running(self) -> bool:
        """Whether the job process is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the job process to exit by itself; return its exit code."""
        assert self._proc is not None
        code = self._proc.wait(timeout=timeout)
        self._proc = None
        return code

    def stop(self) -> None:
        """Stop the job process (and its JVM, in the same process group) by pid."""
        if self._proc is not None:
            stop_pid(self._proc.pid, timeout=20)
            self._proc.wait(timeout=10)
            self._proc = None

    def output(self) -> str:
        """What the job printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> JobProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
