"""What does reading old state cost? Decoding values stored as v1 (resolved + migrated) vs v3.

The state schema has 3 versions: v1 -> v2 adds a field with a default (Avro resolution),
v2 -> v3 changes a type (``page`` string -> enum) with a migrate function. 20k values are
stored as v1 (by a codec that only knows v1: same fingerprint) and 20k as v3; each set is
decoded by the v3 codec. RESULT: microseconds per value, v1 vs v3 (target ratio <= 1.5).
"""

from __future__ import annotations

import time
from typing import Any

from _common import median, result

from flowship.schema import StateCodec, StateSchema

N = 20_000
RUNS = 7
PAGES = ["HOME", "CART", "CHECKOUT", "OTHER"]

V1: dict[str, Any] = {
    "type": "record",
    "name": "Session",
    "namespace": "bench.state",
    "fields": [
        {"name": "clicks", "type": "long"},
        {"name": "total", "type": "long"},
        {"name": "start", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "page", "type": "string"},
    ],
}
V2: dict[str, Any] = {
    **V1,
    "fields": [*V1["fields"], {"name": "sessions", "type": "long", "default": 1}],
}
PAGE: dict[str, Any] = {"type": "enum", "name": "Page", "symbols": PAGES, "default": "OTHER"}
V3: dict[str, Any] = {
    **V1,
    "fields": [{**f, "type": PAGE} if f["name"] == "page" else f for f in V2["fields"]],
}


def to_enum(value: dict[str, Any]) -> dict[str, Any]:
    page = value["page"].upper()
    value["page"] = page if page in PAGES else "OTHER"
    return value


def decode_all(codec: StateCodec, blobs: list[bytes]) -> float:
    decode = codec.decode
    started = time.perf_counter()
    for blob in blobs:
        decode(blob)
    return time.perf_counter() - started


def main() -> None:
    current = StateCodec(StateSchema("session", {1: V1, 2: V2, 3: V3}, migrations={3: to_enum}))
    only_v1 = StateCodec(StateSchema("session", {1: V1}))
    assert only_v1.state_schema.fingerprint() == current.state_schema.fingerprint(1)
    old_blobs = [
        only_v1.encode(
            {
                "clicks": i % 50,
                "total": i,
                "start": 1_700_000_000_000 + i,
                "user": f"user-{i % 997}",
                "page": PAGES[i % 4].lower(),
            }
        )
        for i in range(N)
    ]
    new_blobs = [
        current.encode(
            {
                "clicks": i % 50,
                "total": i,
                "start": 1_700_000_000_000 + i,
                "user": f"user-{i % 997}",
                "page": PAGES[i % 4],
                "sessions": 1,
            }
        )
        for i in range(N)
    ]
    sample = current.decode(old_blobs[5])
    assert sample["page"] == PAGES[1] and sample["sessions"] == 1, sample
    decode_all(current, old_blobs[:1000])
    decode_all(current, new_blobs[:1000])
    old_times, new_times = [], []
    for _ in range(RUNS):
        old_times.append(decode_all(current, old_blobs))
        new_times.append(decode_all(current, new_blobs))
    t_old = median(old_times) / N * 1e6
    t_new = median(new_times) / N * 1e6
    print(
        f"decode {N} values, median of {RUNS}: v1 (resolved + migrated) {t_old:.2f} us/value, "
        f"v3 (current) {t_new:.2f} us/value"
    )
    result("migrated_read", t_old, t_new)


if __name__ == "__main__":
    main()
