"""Version 2 of the example job that writes wrong outputs for a while, then fails.

Its session statistics count every click ten times; each subtask raises at its first record 4 s
after it opened. The checkpoints before (the hand-over's, then every 2 s) commit some of its
wrong outputs: the rollback's replay must follow them with the previous version's, marked
``flowship.replaces``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[4] / "examples" / "click_sessions"))

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})

job = fs.Job("click-sessions", version="2", sources=[clicks], sinks=[stats], flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def open(self, runtime_context):
        self.opened = time.monotonic()

    def process_element(self, record, ctx):
        if time.monotonic() - self.opened > 4.0:
            msg = "wrong_then_fails_v2: failing on purpose 4 s after it opened"
            raise RuntimeError(msg)
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        wrong = output(record.value, s)
        wrong["total_clicks"] = wrong["total_clicks"] * 10
        yield record.with_value(wrong)


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
