"""Version 2 of ``undeclared_state_v1.py`` that sets the max parallelism of ``seen-users``.

Version 1 left it to Flink, which derived 128 from the parallelism; Flink would refuse to
restore version 1's keyed state, split into 128 key groups, into an operator of 256 (after
version 1 was stopped). The gate reads 128 from the running job and refuses the upgrade first
(``max_parallelism_changed``, exit 5).
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


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    sessions = fs.apply(by_user(clicks), SessionStats())
    seen = by_user(sessions).process(SeenUsers()).uid("seen-users").name("seen-users")
    return seen.set_max_parallelism(256)


if __name__ == "__main__":
    job.main()
