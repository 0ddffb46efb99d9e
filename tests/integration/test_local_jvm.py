"""The local target's JVM: flowship's options are on its command line, a user's JVM_ARGS win."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """\
import json
from flowship._jars import find_jars
from flowship.job._runtime import make_env
from pyflink.java_gateway import get_gateway

make_env({"pipeline.jars": find_jars().pipeline_jars()})
bean = get_gateway().jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print(json.dumps([str(a) for a in bean.getInputArguments()]))
"""


def jvm_arguments(jvm_args: str) -> list[str]:
    env = {**os.environ, "JVM_ARGS": jvm_args}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(300)
def test_local_jvm_runs_without_the_exception_event_log_and_keeps_the_callers_args() -> None:
    args = jvm_arguments("-XX:TieredStopAtLevel=1")
    assert "-XX:TieredStopAtLevel=1" in args, args
    assert "-XX:+UnlockDiagnosticVMOptions" in args and "-XX:-LogEvents" in args, args
    # a JVM_ARGS that decides about the event log itself is left as it is
    args = jvm_arguments("-XX:+UnlockDiagnosticVMOptions -XX:+LogEvents")
    assert "-XX:+LogEvents" in args and "-XX:-LogEvents" not in args, args


CACHE_PROBE = """\
import json, sys
from flowship._jars import find_jars
from flowship.job._runtime import make_env
from pyflink.java_gateway import get_gateway

make_env({"pipeline.jars": find_jars().pipeline_jars()}, runs_job=sys.argv[1] == "job")
bean = get_gateway().jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print(json.dumps([str(a) for a in bean.getInputArguments()]))
"""


@pytest.mark.timeout(300)
def test_a_job_jvm_writes_the_class_archive_and_later_jvms_map_it(tmp_path) -> None:
    """Real JVMs: the archive a job's JVM writes at exit is checked, taken and mapped."""
    import time

    from flowship.job._class_cache import CACHE_ENV, SETTLE_S

    cache = tmp_path / "cache"
    # the same JVM_ARGS for every run (they are part of the archive's key): where each JVM
    # says it loaded each class from
    env = {**os.environ, CACHE_ENV: str(cache),
           "JVM_ARGS": f"-Xlog:class+load=info:file={tmp_path}/classes-%p.log"}

    def probe(kind: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", CACHE_PROBE, kind], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "[cds" not in done.stdout + done.stderr  # the JVM's CDS lines are kept quiet
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    # a JVM that only builds a graph writes nothing
    assert not any("Archive" in a for a in probe("graph"))
    assert not list(cache.glob("*.part"))
    # a job's JVM writes its classes when it exits
    written = probe("job")
    assert any(a.startswith("-XX:ArchiveClassesAtExit=") for a in written), written
    (part,) = cache.glob("*.part")
    time.sleep(SETTLE_S + 1)  # settled: its JVM is done with it
    used = probe("graph")
    archive = next(a.split("=", 1)[1] for a in used if a.startswith("-XX:SharedArchiveFile="))
    assert not part.exists() and archive == str(part.with_suffix("").with_suffix(".jsa"))
    # the last JVM took Flink's classes from the archive, not from the jars
    logs = sorted(tmp_path.glob("classes-*.log"), key=lambda p: p.stat().st_mtime)
    shared = [line for line in logs[-1].read_text().splitlines()
              if "org.apache.flink." in line and "shared objects file (top)" in line]
    assert len(shared) > 100, logs[-1].read_text()[-2000:]
