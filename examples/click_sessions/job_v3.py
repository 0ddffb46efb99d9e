"""The example job, version 3: ``last_page`` becomes an enum (a type change, migrated).

Avro resolution cannot turn a string into an enum, so state version 3 declares a migrate
function for the step 2 -> 3. Values written by version 1 resolve to version 2 by Avro rules,
then migrate; values written by version 2 migrate directly; both lazily, on first read.
"""

from __future__ import annotations

from common import FLAGS, STATE, advance, by_user, clicks, millis, output, stats
from pyflink.datastream import KeyedProcessFunction

import flowship as fs

PAGE_TO_SYMBOL = {"/": "HOME", "/search": "SEARCH", "/item": "ITEM", "/cart": "CART",
                  "/checkout": "CHECKOUT"}
SYMBOL_TO_PAGE = {v: k for k, v in PAGE_TO_SYMBOL.items()}


def page_to_enum(v2: dict) -> dict:
    """Migrate a version-2 session to version 3: ``last_page`` string -> ``Page`` symbol."""
    return {**v2, "last_page": PAGE_TO_SYMBOL.get(v2["last_page"], "UNKNOWN")}


SESSION = fs.StateSchema(
    "session",
    versions={1: STATE / "session_v1.avsc", 2: STATE / "session_v2.avsc",
              3: STATE / "session_v3.avsc"},
    migrations={3: page_to_enum},
)

job = fs.Job("click-sessions", version="3", sources=[clicks], sinks=[stats], flags=FLAGS,
             description="Per-user session statistics over click events (v3: page enum).")


@fs.stateful("session-stats", session=fs.ValueState(SESSION))
class SessionStats(KeyedProcessFunction):
    """Version 2's behaviour, with the last page kept as an enum symbol."""

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
