"""Version 2 of the flags test job: the same, without the flag "beta" (always off here)."""

from __future__ import annotations

from pathlib import Path

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

HERE = Path(__file__).parent

events = fs.KafkaSource(uid="events-source", topic="flag-events", schema=HERE / "event.avsc",
                        name="events")
decisions = fs.KafkaSink(uid="decisions-sink", topic="flag-decisions",
                         schema=HERE / "decision.avsc", key="user_id")
COUNT = fs.StateSchema("count", versions={1: HERE / "count.avsc"})

job = fs.Job(
    "flag-test",
    version="2",
    sources=[events],
    sinks=[decisions],
    flags=[
        fs.Flag("new-pricing", default=False),
        fs.Flag("tier", variants={"basic": "basic", "gold": "gold"}, default="basic"),
    ],
)


TIMER_EVERY = 40  # every 40th click of a user sets a timer that emits a summary


@fs.stateful("count-per-user", count=fs.ValueState(COUNT))
class CountPerUser(KeyedProcessFunction):
    def process_element(self, record: fs.Record, ctx: KeyedProcessFunction.Context):
        state = self.count.value() or {"count": 0}
        state["count"] += 1
        self.count.update(state)
        if state["count"] % TIMER_EVERY == 0:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + 300)
        yield record.with_value({
            "event_id": record.value["event_id"],
            "user_id": record.value["user_id"],
            "count": state["count"],
            "source": record.provenance,
        })

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # no input record: flowship gives this output the decisions of the key's last input
        state = self.count.value()
        yield {"event_id": f"t-{ctx.get_current_key()}-{state['count']}",
               "user_id": ctx.get_current_key(), "count": state["count"], "source": "timer"}


def with_branches(record: fs.Record) -> fs.Record:
    """Write the branches the output's input took into it (the test checks them)."""
    return record.with_value({**record.value, "pricing": record.flag("new-pricing"),
                              "tier": record.flag("tier"), "beta": False})


@job.topology
def build(events):
    keyed = events.key_by(lambda r: r.value["user_id"], key_type=Types.STRING())
    return fs.apply(keyed, CountPerUser()).map(with_branches)


if __name__ == "__main__":
    job.main()
