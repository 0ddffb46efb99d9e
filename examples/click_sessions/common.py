"""What every version of the example job shares: its Kafka topics and the session logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyflink.common import Types

import flowship as fs

HERE = Path(__file__).parent
SESSION_GAP_MS = 30 * 60 * 1000
STATE = HERE / "state"

#: How long without a click ends a session: a flag, so a longer gap can be tried on a slice of
#: users or partitions without a redeploy, decided per input record by its offset, e.g.
#: ``flowship flag set click-sessions session-gap percent=10:60m``.
SESSION_GAP = fs.Flag("session-gap", variants={"30m": SESSION_GAP_MS, "60m": 2 * SESSION_GAP_MS},
                      default="30m")
FLAGS = [SESSION_GAP]

clicks = fs.KafkaSource(uid="clicks-source", topic="clicks", schema=HERE / "click.avsc",
                        name="clicks")
stats = fs.KafkaSink(uid="session-stats-sink", topic="session-stats",
                     schema=HERE / "session_stats.avsc", key="user_id")


def by_user(stream: Any) -> Any:
    """Key the click stream by user."""
    return stream.key_by(lambda r: r.value["user_id"], key_type=Types.STRING())


def millis(ts: Any) -> int:
    """Avro timestamp-millis arrives as a datetime; state keeps epoch milliseconds."""
    return ts if isinstance(ts, int) else int(ts.timestamp() * 1000)


def advance(s: dict[str, Any] | None, ts_ms: int, gap_ms: int = SESSION_GAP_MS) -> dict[str, Any]:
    """The session logic: one click at ``ts_ms`` applied to state ``s`` (None for a new user).

    A session ends after ``gap_ms`` without a click (the ``session-gap`` flag's value).
    """
    if s is None:
        return {"session_clicks": 1, "total_clicks": 1, "session_start": ts_ms,
                "last_ts": ts_ms, "sessions": 1}
    s["total_clicks"] += 1
    if ts_ms - s["last_ts"] > gap_ms:
        s.update(session_clicks=1, session_start=ts_ms, sessions=s["sessions"] + 1)
    else:
        s["session_clicks"] += 1
    s["last_ts"] = ts_ms
    return s


def output(click: dict[str, Any], s: dict[str, Any], previous_page: str | None = None) -> dict:
    """The output record for one click, from the state after it."""
    return {"event_id": click["event_id"], "user_id": click["user_id"],
            "session_clicks": s["session_clicks"], "total_clicks": s["total_clicks"],
            "session_start": s["session_start"], "sessions": s["sessions"],
            "previous_page": previous_page}
