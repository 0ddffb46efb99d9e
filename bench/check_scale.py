"""How long does the upgrade gate take on a big job? ``check_upgrade`` on 30 stateful operators.

Each operator has one state with 5 versions (each adds a field with a default); the new version
adds a sixth. Budget: 200 ms for the whole check (ratio = median / 200 ms, target <= 1).
"""

from __future__ import annotations

import time
from typing import Any

from _common import median, result

from flowship.deploy.check import check_upgrade
from flowship.schema import StateSchema
from flowship.state import STATE_LAYOUT

OPERATORS = 30
VERSIONS = 5
BUDGET_MS = 200.0
RUNS, WARMUPS = 15, 2


def schema(op: int, version: int) -> dict[str, Any]:
    """Version ``version`` of operator ``op``'s state: 4 base fields + one per version after 1."""
    base = [
        {"name": "count", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "last_ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ]
    added = [
        {"name": f"extra_{n}", "type": ["null", "string"], "default": None}
        if n % 2
        else {"name": f"extra_{n}", "type": "double", "default": 0.0}
        for n in range(2, version + 1)
    ]
    return {
        "type": "record",
        "name": f"State{op}",
        "namespace": "bench.state",
        "fields": base + added,
    }


def manifest(versions: int, version: str) -> dict[str, Any]:
    stateful = {}
    for op in range(OPERATORS):
        uid = f"op-{op:02d}"
        ss = StateSchema(f"s{op}", {v: schema(op, v) for v in range(1, versions + 1)})
        desc = {"kind": "value", "layout": STATE_LAYOUT, **ss.describe()}
        stateful[uid] = {"uid": uid, "class": f"Op{op}", "states": {"acc": desc}}
    click = {"type": "record", "name": "Click", "fields": [{"name": "user", "type": "string"}]}
    uids = ["src", "src.decode", "src.dlq", "out", "out.encode", *stateful]
    return {
        "format": 1,
        "job": "big",
        "version": version,
        "code_digest": "sha256:0",
        "script": "big.py",
        "flink_version": "2.2.1",
        "execution_mode": "thread",
        "state_layout": STATE_LAYOUT,
        "sources": [{"uid": "src", "topic": "in", "schema": click, "dead_letter_topic": "in.dlq"}],
        "sinks": [{"uid": "out", "topic": "out", "schema": click}],
        "operator_uids": sorted(uids),
        "stateful": stateful,
        "dropped": [],
    }


def main() -> None:
    old, new = manifest(VERSIONS, "1"), manifest(VERSIONS + 1, "2")
    report = check_upgrade(old, new)
    assert report.compatible, str(report)
    assert len(report.checked) >= OPERATORS, report.checked
    for _ in range(WARMUPS):
        check_upgrade(old, new)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        check_upgrade(old, new)
        times.append((time.perf_counter() - started) * 1000)
    took = median(times)
    print(
        f"check_upgrade: {OPERATORS} operators x {VERSIONS}->{VERSIONS + 1} versions: "
        f"median {took:.2f} ms over {RUNS} runs (min {min(times):.2f}, max {max(times):.2f})"
    )
    result("check_scale", took, BUDGET_MS)


if __name__ == "__main__":
    main()
