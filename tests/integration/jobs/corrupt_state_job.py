"""A test job whose state for user u0001 gets corrupted bytes behind flowship's back.

The first click of u0001 writes garbage through the raw Flink state (as a broken deploy or a
foreign serializer would); the next read through the flowship handle must fail with a clear
StateError naming the operator uid, the state, the key and the fingerprint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})
job = fs.Job("corrupt-state", version="1", sources=[clicks], sinks=[stats])


@fs.stateful("session-stats", session=fs.ValueState(SESSION, cache_size=0))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]))
        if record.value["user_id"] == "u0001":
            self.session._state.update("\x01\x00\x01\x02garbage")  # bypass flowship
        else:
            self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
