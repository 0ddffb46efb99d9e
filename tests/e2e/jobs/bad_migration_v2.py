"""A version 2 whose migrate function has a bug: it raises on some stored values.

The gate passes (version 2 declares a migration for the step 1 -> 2), so only reading the
stored state finds the bug: ``--dry-run`` must report it with the operator uid, state and key.
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


def add_last_page(v1: dict) -> dict:
    """The bug: users with an even click count blow up."""
    if v1["total_clicks"] % 2 == 0:
        raise ValueError(f"cannot migrate a session with {v1['total_clicks']} clicks")
    return {**v1, "last_page": ""}


SESSION = fs.StateSchema(
    "session",
    versions={1: STATE / "session_v1.avsc", 2: STATE / "session_v2.avsc"},
    migrations={2: add_last_page},
)
job = fs.Job("click-sessions", version="2-bad-migration", sources=[clicks], sinks=[stats],
             flags=FLAGS)


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record, ctx):
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
