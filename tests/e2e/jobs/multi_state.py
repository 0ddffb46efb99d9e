"""A job with value, map and list state in one operator, for the dry run's state reader.

Per user: the session (value, the example's), clicks per page (map), the last three event ids
(list). Output as the example's, so it writes the same topics.
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
COUNT = fs.StateSchema("page_count", versions={1: {
    "type": "record", "name": "PageCount", "fields": [{"name": "clicks", "type": "long"}]}})
RECENT = fs.StateSchema("recent_click", versions={1: {
    "type": "record", "name": "RecentClick", "fields": [{"name": "event_id", "type": "string"}]}})

job = fs.Job("multi-state", version="1", sources=[clicks], sinks=[stats])


@fs.stateful("per-user", session=fs.ValueState(SESSION), pages=fs.MapState(COUNT),
             recent=fs.ListState(RECENT))
class PerUser(KeyedProcessFunction):
    def process_element(self, record, ctx):
        s = advance(self.session.value(), millis(record.value["ts"]))
        self.session.update(s)
        page = record.value["page"]
        seen = self.pages.get(page)
        self.pages.put(page, {"clicks": (seen["clicks"] if seen else 0) + 1})
        recent = [*self.recent.get()[-2:], {"event_id": record.value["event_id"]}]
        self.recent.update(recent)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks):
    return fs.apply(by_user(clicks), PerUser())


if __name__ == "__main__":
    job.main()
