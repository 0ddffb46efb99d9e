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
