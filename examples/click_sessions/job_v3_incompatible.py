"""A deliberately incompatible version 3: the schema was edited in place.

The author changed ``last_page`` to an enum by editing the state schema and dropping the older
versions (``versions={1: ...v3 schema...}``), with no migrate function. The file imports fine,
but the running version's state was written with other schemas (fingerprints) that this code
no longer declares: ``flowship check`` and the upgrade gate refuse it before anything stops.
"""

from __future__ import annotations

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from job_v3 import PAGE_TO_SYMBOL, SYMBOL_TO_PAGE
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v3.avsc"})

job = fs.Job("click-sessions", version="3-incompatible", sources=[clicks], sinks=[stats],
             flags=FLAGS,
             description="Per-user session statistics (v3 with its state schema edited in place).")


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    """Same logic as job_v3.py; only the state declaration is wrong."""

    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        s = self.session.value()
        previous = SYMBOL_TO_PAGE.get(s["last_page"], "") if s is not None else ""
        s = advance(s, millis(record.value["ts"]), record.flag("session-gap"))
        s["last_page"] = PAGE_TO_SYMBOL.get(record.value["page"], "UNKNOWN")
        self.session.update(s)
        yield record.with_value(output(record.value, s, previous))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
