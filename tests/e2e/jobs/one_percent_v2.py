"""A version of the example job that differs from version 1 on 1 % of records, in one field.

Version 1's state and code, except that the output of every click whose event number is a
multiple of 100 (``e00000100``, ``e00000200``, ...) carries ``previous_page="/dark"`` where
version 1 writes none: the deliberate change a dark launch's diff must find, and only it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})
job = fs.Job("click-sessions", version="1.2", sources=[clicks], sinks=[stats],
             flags=FLAGS)


def changed(event_id: str) -> bool:
    """Whether this version's output for ``event_id`` differs from version 1's."""
    return int(event_id[1:]) % 100 == 0


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        dark = "/dark" if changed(record.value["event_id"]) else None
        yield record.with_value(output(record.value, s, previous_page=dark))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
