"""The example job's session logic with three flags read per record, or with none.

bench/flags.py's two sides: the same session logic as ``examples/click_sessions/job.py``. With
three flags, each output also reads them (the values do not change the output, so both sides
write the same records). With ``BENCH_FLAGS=0`` in the environment, the job declares no flags
and reads none: no control plane at all, the baseline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "click_sessions"))

from common import STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

SESSION = fs.StateSchema("session", versions={1: STATE / "session_v1.avsc"})
FLAGS = [
    fs.Flag("new-pricing", default=False),
    fs.Flag("tier", variants={"basic": 1.0, "gold": 1.2}, default="basic"),
    fs.Flag("cart-beta", default=False),
]
WITH_FLAGS = os.environ.get("BENCH_FLAGS", "3") != "0"

job = fs.Job("click-sessions", version="1", sources=[clicks], sinks=[stats],
             flags=FLAGS if WITH_FLAGS else [])


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    def process_element(self, record: fs.Record, ctx: Any) -> Any:
        s = advance(self.session.value(), millis(record.value["ts"]))
        self.session.update(s)
        out = output(record.value, s)
        if WITH_FLAGS:
            if record.flag("new-pricing") and record.flag("cart-beta"):
                out["session_clicks"] = s["session_clicks"]  # the same value: outputs stay equal
            record.flag("tier")
        yield record.with_value(out)


@job.topology
def build(clicks: Any) -> Any:
    return fs.apply(by_user(clicks), SessionStats())


if __name__ == "__main__":
    job.main()
