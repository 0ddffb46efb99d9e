"""A version 2 whose operator hangs in ``open()``, and is therefore slow to cancel.

The gate lets it through (its state schemas are right). Its tasks never finish opening, so it
completes no checkpoint: the health watch finds it unhealthy at the end of its window, and the
rollback cancels it. A task busy in Python code only sees the cancel once ``open()`` returns
(``SLOW_OPEN_S`` after it began: past the deployer's hand-over and the health window, each
15 s in the test, with room for a loaded machine): until then Flink reports the job CANCELLING, and
version 1 must not be started (two copies of the job would run at once).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, STATE, by_user, clicks, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc",
                                              2: STATE / "session_v2.avsc"})
SLOW_OPEN_S = 60.0
job = fs.Job("click-sessions", version="2-slow", sources=[clicks], sinks=[stats], flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def open(self, runtime_context):
        time.sleep(SLOW_OPEN_S)

    def process_element(self, record, ctx):
        yield from ()


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
