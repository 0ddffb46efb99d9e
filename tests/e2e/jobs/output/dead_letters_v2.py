"""Version 2 of the example job whose source schema wants a field producers never write.

Every record fails to decode and goes to the dead-letter topic; the job itself runs, checkpoints
and never fails. The gate only warns (``source_schema_changed``): the health watch must see that
the dead-letter share jumped from the previous version's and roll it back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ.get("FLOWSHIP_TEST_EXAMPLE")
                or str(Path(__file__).resolve().parents[4] / "examples" / "click_sessions"))

from common import FLAGS, STATE, advance, by_user, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

HERE = Path(__file__).resolve().parent
SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})
clicks = fs.KafkaSource(uid="clicks-source", topic="clicks", schema=HERE / "click_v2.avsc",
                        name="clicks")

job = fs.Job("click-sessions", version="2", sources=[clicks], sinks=[stats], flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]), record.flag("session-gap"))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
