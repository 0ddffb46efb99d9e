"""Click events for the example job: a deterministic generator, poison payloads, a reference."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

SESSION_GAP_MS = 30 * 60 * 1000
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def clicks(count: int, users: int = 100, seed: int = 7, start: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` click events over ``users`` users; event ids ``e<index>`` are unique."""
    rng = random.Random(seed)
    clock = {f"u{u:04d}": BASE_TS for u in range(users)}
    pages = ["/", "/search", "/item", "/cart", "/checkout"]
    for i in range(start, start + count):
        user = f"u{rng.randrange(users):04d}"
        # mostly short gaps, now and then a long one that starts a new session
        clock[user] += rng.choice([5_000, 20_000, 60_000, 40 * 60_000])
        yield {
            "event_id": f"e{i:08d}",
            "user_id": user,
            "page": rng.choice(pages),
            "ts": clock[user],
        }


def poison_payloads(count: int, valid: bytes) -> list[bytes]:
    """``count`` payloads that do not decode as a Click: junk, truncated, trailing bytes."""
    kinds = [
        lambda i: b"\xff\xfe not avro " + str(i).encode(),  # negative string length
        lambda i: valid[: max(1, len(valid) // 2)],  # truncated record
        lambda i: valid + b"\x00trailing" + bytes([i % 256]),  # valid record + trailing bytes
        lambda i: b"",  # empty payload
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


def reference(
    events: list[dict[str, Any]], gap_of: Callable[[dict[str, Any]], int] | None = None
) -> dict[str, dict[str, Any]]:
    """The expected output of the example job for each event id, computed in plain Python.

    ``gap_of(event)``: the session gap in force for that event (the ``session-gap`` flag's
    value); 30 minutes, the flag's default, when not given.
    """
    per_user: dict[str, tuple[int, int, int, int, int]] = {}
    expected: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e["event_id"]):
        ts = e["ts"]
        cur = per_user.get(e["user_id"])
        if cur is None:
            sc, total, start, sessions = 1, 1, ts, 1
        else:
            sc, total, start, last, sessions = cur
            total += 1
            gap = SESSION_GAP_MS if gap_of is None else gap_of(e)
            if ts - last > gap:
                sc, start, sessions = 1, ts, sessions + 1
            else:
                sc += 1
        per_user[e["user_id"]] = (sc, total, start, ts, sessions)
        expected[e["event_id"]] = {
            "event_id": e["event_id"],
            "user_id": e["user_id"],
            "session_clicks": sc,
            "total_clicks": total,
            "session_start": start,
            "sessions": sessions,
            "previous_page": None,
        }
    return expected


def reference_staged(batches: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Expected outputs when batch 1 is processed by v1, batch 2 by v2, batch 3 by v3, ..."""
    version_of = {e["event_id"]: n for n, batch in enumerate(batches, start=1) for e in batch}
    return reference_versioned([e for batch in batches for e in batch], version_of)


def reference_versioned(
    events: list[dict[str, Any]], version_of: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Expected outputs when each event was processed by the job version ``version_of`` names.

    Session fields carry over through state (as :func:`reference`); ``previous_page`` is None
    for v1 outputs, and from v2 on the page of the user's previous click if a version >= 2
    processed it, else ``""`` (the default that state written by v1 resolves to).
    """
    expected = reference(events)
    last_page: dict[str, str] = {}
    for e in sorted(events, key=lambda e: e["event_id"]):
        out = expected[e["event_id"]]
        if version_of[e["event_id"]] == 1:
            out["previous_page"] = None
            last_page.pop(e["user_id"], None)
        else:
            out["previous_page"] = last_page.get(e["user_id"], "")
            last_page[e["user_id"]] = e["page"]
    return expected
