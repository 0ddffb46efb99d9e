"""The example job's version 1 code released as version 2 with a typo in its source topic.

``clickz`` instead of ``clicks``: a deployment of it (first deploy, ``--upgrade-from``,
``--dry-run``) must fail on the missing topic before anything is recorded, stopped or started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[3] / "examples" / "click_sessions"))

from common import FLAGS, HERE, STATE, advance, by_user, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})
clicks = fs.KafkaSource(uid="clicks-source", topic="clickz", schema=HERE / "click.avsc",
                        name="clicks")
job = fs.Job("click-sessions", version="2", sources=[clicks], sinks=[stats], flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
