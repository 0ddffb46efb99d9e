from __future__ import annotations

import os
import sys
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # everything under tests/integration or tests/e2e needs a JVM; mark it so `-m "not jvm"`
    # selects the fast set
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.jvm)
