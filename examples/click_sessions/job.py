"""Per-user session statistics over click events: the flowship example job.

One output per input click: the user's clicks in the current session, in all sessions, when the
session started and how many sessions the user had. A session ends after 30 minutes (event time)
without a click.

    python examples/click_sessions/job.py --bounded --kafka-bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

from pathlib import Path

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

import flowship as fs

HERE = Path(__file__).parent
SESSION_GAP_MS = 30 * 60 * 1000

clicks = fs.KafkaSource(
    uid="clicks-source", topic="clicks", schema=HERE / "click.avsc", name="clicks"
)
stats = fs.KafkaSink(
    uid="session-stats-sink",
    topic="session-stats",
    schema=HERE / "session_stats.avsc",
    key="user_id",
)

job = fs.Job(
    "click-sessions",
    version="1",
    sources=[clicks],
    sinks=[stats],
    description="Per-user session statistics over click events.",
)


class SessionStats(KeyedProcessFunction):
    """Keeps (session_clicks, total_clicks, session_start, last_ts, sessions) per user."""

    def open(self, runtime_context: RuntimeContext) -> None:
        # a Flink-native tuple serializer: no pickled state
        self.state = runtime_context.get_state(
            ValueStateDescriptor("session", Types.TUPLE([Types.LONG()] * 5))
        )

    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        click = record.value
        ts = click["ts"]
        ts_ms = ts if isinstance(ts, int) else int(ts.timestamp() * 1000)
        current = self.state.value()
        if current is None:
            session_clicks, total, start, sessions = 1, 1, ts_ms, 1
        else:
            session_clicks, total, start, last_ts, sessions = current
            total += 1
            if ts_ms - last_ts > SESSION_GAP_MS:
                session_clicks, start, sessions = 1, ts_ms, sessions + 1
            else:
                session_clicks += 1
        self.state.update((session_clicks, total, start, ts_ms, sessions))
        yield record.with_value(
            {
                "event_id": click["event_id"],
                "user_id": click["user_id"],
                "session_clicks": session_clicks,
                "total_clicks": total,
                "session_start": start,
                "sessions": sessions,
            }
        )


@job.topology
def build(clicks):
    return (
        clicks.key_by(lambda r: r.value["user_id"], key_type=Types.STRING())
        .process(SessionStats())
        .uid("session-stats")
        .name("session-stats")
    )


if __name__ == "__main__":
    job.main()
