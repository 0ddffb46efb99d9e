"""Version 1 of the example job with one more stateful operator, one flowship does not know of.

``seen-users`` is a plain PyFlink operator (raw keyed state, an explicit uid) that passes every
output through and counts outputs per user. flowship's manifest does not list it, so the gate
lets an upgrade to the example's ``job_v2.py`` (which has no such operator) through, and Flink
refuses to restore the pre-upgrade savepoint into that version: its start fails after this
version was stopped. flowship then starts this version again from that savepoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})

job = fs.Job("click-sessions", version="1", sources=[clicks], sinks=[stats], flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


class SeenUsers(KeyedProcessFunction):
    """Not declared to flowship: raw PyFlink state under an explicit uid."""

    def open(self, runtime_context):
        self.seen = runtime_context.get_state(ValueStateDescriptor("seen", Types.LONG()))

    def process_element(self, record, ctx):
        self.seen.update((self.seen.value() or 0) + 1)
        yield record


@job.topology
def build(clicks):
    sessions = fs.apply(by_user(clicks), SessionStats())
    return by_user(sessions).process(SeenUsers()).uid("seen-users").name("seen-users")


if __name__ == "__main__":
    job.main()
