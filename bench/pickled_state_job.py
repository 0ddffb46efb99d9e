"""The example job (version 1) with plain PyFlink pickled state instead of flowship state.

Everything else is the flowship job: same sources, sinks, session logic and settings, so that
bench/state_overhead.py measures only what flowship's versioned Avro state costs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "click_sessions"))

from common import advance, by_user, clicks, millis, output, stats
from pyflink.common import Types
from pyflink.datastream import DataStream, KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

import flowship as fs

job = fs.Job("click-sessions", version="1-pickled", sources=[clicks], sinks=[stats])


class SessionStats(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.session = runtime_context.get_state(
            ValueStateDescriptor("session", Types.PICKLED_BYTE_ARRAY()))

    def process_element(
        self, record: fs.Record, ctx: KeyedProcessFunction.Context
    ) -> Iterator[fs.Record]:
        s = advance(self.session.value(), millis(record.value["ts"]))
        self.session.update(s)
        yield record.with_value(output(record.value, s))


@job.topology
def build(clicks: DataStream) -> DataStream:
    return by_user(clicks).process(SessionStats()).uid("session-stats").name("session-stats")


if __name__ == "__main__":
    job.main()
