"""Per-user session statistics over click events: the flowship example job, version 1.

One output per input click: the user's clicks in the current session, in all sessions, when the
session started and how many sessions the user had. A session ends after 30 minutes (event time)
without a click. The per-user state is a versioned Avro record (``state/session_v1.avsc``).

    python examples/click_sessions/job.py --bounded --kafka-bootstrap 127.0.0.1:9092

``job_v2.py`` and ``job_v3.py`` are the next versions of this file, as a team would write them;
``job_v3_incompatible.py`` is the classic mistake flowship refuses to deploy.
"""

from __future__ import annotations

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})

job = fs.Job("click-sessions", version="1", sources=[clicks], sinks=[stats], flags=FLAGS,
             description="Per-user session statistics over click events.")


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    """Per user: clicks in the current session and overall, session start, sessions so far."""

    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
