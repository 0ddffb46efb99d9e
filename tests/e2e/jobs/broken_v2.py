"""A broken version 2: compatible state declaration, but it raises on its first restored value.

The gate lets it through (its state schemas are right); the health watch sees it fail and
restart, and flowship rolls back to version 1 from the pre-upgrade savepoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, STATE, by_user, clicks, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc",
                                              2: STATE / "session_v2.avsc"})
job = fs.Job("click-sessions", version="2-broken", sources=[clicks], sinks=[stats],
             flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        if self.session.value() is not None:
            msg = "bug in version 2: cannot handle a restored session"
            raise RuntimeError(msg)
        yield from ()


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
