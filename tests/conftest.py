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

# Every local job JVM maps Flink's classes from flowship's class-data archive
# (flowship/job/_class_cache.py): the suite keeps its own, in the checkout, written by the first
# job JVM that exits and mapped by the later ones. (JVM_ARGS is part of the archive's key: the
# suite's quick-compiler JVMs get one of their own.)
os.environ.setdefault("FLOWSHIP_JVM_CLASS_CACHE", str(ROOT / ".flowship" / "jvm-classes"))

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
