"""Version 2 of ``undeclared_state_v1.py`` that ships a connector jar this host does not have.

Its state and graph are version 1's, so the gate lets it through; Flink refuses to start it
(the jar named in ``pipeline.jars`` is not there), after version 1 was stopped with a savepoint.
flowship starts version 1 again from that savepoint. A release whose dependency is missing on
the host it starts on is a failure no gate of the code can foresee.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction
from undeclared_state_v1 import SeenUsers

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})

job = fs.Job("click-sessions", version="2", sources=[clicks], sinks=[stats], flags=FLAGS)

MISSING_JAR = "file:///nonexistent/flowship-test/connector-extra-1.0.jar"


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    clicks.get_execution_environment().add_jars(MISSING_JAR)
    sessions = fs.apply(by_user(clicks), SessionStats())
    return by_user(sessions).process(SeenUsers()).uid("seen-users").name("seen-users")


if __name__ == "__main__":
    job.main()
