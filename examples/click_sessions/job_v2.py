"""The example job, version 2: the state remembers the user's last page (an additive change).

State version 2 adds ``last_page`` with a default, so values written by version 1 resolve by
Avro schema resolution alone: ``last_page`` reads as ``""`` until the user clicks again. The
output's ``previous_page`` shows what state held before each click.
"""

from __future__ import annotations

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={
    1: STATE / "session_v1.avsc",
    2: STATE / "session_v2.avsc",
})

job = fs.Job("click-sessions", version="2", sources=[clicks], sinks=[stats], flags=FLAGS,
             description="Per-user session statistics over click events (v2: last page).")


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    """Version 1's statistics, plus the page the user was on before this click."""

    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        s = self.session.value()
        previous = s["last_page"] if s is not None else ""
        s = advance(s, millis(record.value["ts"]), record.flag("session-gap"))
        s["last_page"] = record.value["page"]
        self.session.update(s)
        yield record.with_value(output(record.value, s, previous))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
