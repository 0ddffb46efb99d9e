from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "click_sessions"
sys.path.insert(0, str(EXAMPLE))

# The suite's JVMs (each job's mini-cluster, the session cluster, `flink run`) live for seconds to
# minutes, most of which the JIT's optimizing compiler spends compiling: with the quick compiler
# alone a job starts and runs its first minute on about a third less CPU, on a machine where
# the suite is CPU-bound. PyFlink's gateway and Flink's scripts put JVM_ARGS on their java
# command lines. Measurements (bench/) never run with it; the smoke runs here measure nothing.
os.environ.setdefault("JVM_ARGS", "-XX:TieredStopAtLevel=1")

# The test jobs under tests/*/jobs/ import the example's modules. A rollback runs a version from
# the archive of its script's directory (flowship/deploy/archive.py), which holds only the test
# jobs: they find the example through this variable, which every job process inherits.
os.environ.setdefault("FLOWSHIP_TEST_EXAMPLE", str(EXAMPLE))

# The health watch's soak time and input minimum (10 s, 100 records by default) make every
# upgrade's watch last at least that long; the suite's upgrades test other things (their inputs
# are small and bursty), so their versions are stable on 2 s and one record, as before output was
# judged. tests/e2e/test_output_health.py gives the defaults back on its command lines.
os.environ.setdefault("FLOWSHIP_HEALTH_SOAK_S", "2")
os.environ.setdefault("FLOWSHIP_HEALTH_MIN_INPUTS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # everything under tests/integration or tests/e2e needs a JVM; mark it so `-m "not jvm"`
    # selects the fast set
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.jvm)


# A class-data-sharing archive (the JDK's CDS) of the classes a PyFlink job's JVM loads as it
# starts: job JVMs map them from it instead of reading and verifying them from the jars, about a
# fifth less CPU per start. Built once per checkout and Flink version, under .flowship/; a JVM
# whose class path differs (the session cluster, the broker, an installed wheel) ignores it.
_ARCHIVE_PROBE = """\
from pyflink.datastream import StreamExecutionEnvironment
env = StreamExecutionEnvironment.get_execution_environment()
env.from_collection([1, 2, 3]).print()
env.execute("flowship-class-list")
"""


def _job_class_archive() -> Path | None:
    folder = ROOT / ".flowship" / "cds" / metadata.version("apache-flink")
    archive = folder / "job-jvm.jsa"
    if archive.exists():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    classes = folder / f"classes-{os.getpid()}.lst"
    flag = f"-XX:DumpLoadedClassList={classes}"
    env = {**os.environ, "JVM_ARGS": f"{os.environ['JVM_ARGS']} {flag}"}
    probe = subprocess.Popen([sys.executable, "-c", _ARCHIVE_PROBE], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command: list[str] = []
    deadline = time.monotonic() + 120
    while probe.poll() is None and time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if flag in argv and "-cp" in argv:
                command = argv
        time.sleep(0.2)
    if probe.poll() is None:
        probe.kill()
    probe.wait()
    # whether its little job succeeds does not matter: the JVM has loaded the mini-cluster's
    # classes by then
    if not command or not classes.exists():
        classes.unlink(missing_ok=True)
        return None
    partial = folder / f"job-jvm-{os.getpid()}.jsa"
    dumped = subprocess.run(
        [command[0], "-Xshare:dump", f"-XX:SharedClassListFile={classes}",
         f"-XX:SharedArchiveFile={partial}", "-cp", command[command.index("-cp") + 1]],
        capture_output=True, timeout=300, check=False)
    classes.unlink(missing_ok=True)
    if dumped.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        return None
    partial.replace(archive)
    return archive


@pytest.fixture(scope="session", autouse=True)
def _job_jvm_class_archive(request: pytest.FixtureRequest) -> Iterator[None]:
    if any(item.get_closest_marker("jvm") for item in request.session.items):
        archive = _job_class_archive()
        if archive is not None:
            os.environ["JVM_ARGS"] += f" -XX:SharedArchiveFile={archive}"
    yield
