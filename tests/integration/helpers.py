from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import events

from flowship.schema import AvroCodec
from flowship.testing.kafka_io import Message, create_topics, produce, read_topic

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "click_sessions"
JOB = EXAMPLE / "job.py"
CLICK = EXAMPLE / "click.avsc"
STATS = EXAMPLE / "session_stats.avsc"
TOPICS = {"clicks": 4, "session-stats": 4, "clicks.dlq": 1}


def setup_topics(bootstrap: str) -> None:
    create_topics(bootstrap, TOPICS)


def produce_clicks(bootstrap: str, evs: list[dict[str, Any]], rate: float = 0.0) -> int:
    codec = AvroCodec(CLICK)
    return produce(bootstrap, "clicks", [(e["user_id"].encode(), codec.encode(e)) for e in evs],
                   rate=rate)


def produce_clicks_gated(bootstrap: str, evs: list[dict[str, Any]], rate: float,
                         first: int | list[int], gate: threading.Event | list[threading.Event],
                         timeout: float = 600.0) -> None:
    """``evs[:first]`` at ``rate``; once ``gate`` is set, the rest at ``rate``.

    With lists, phase by phase: ``evs[:first[0]]`` at once, then, once ``gate[i]`` is set,
    ``evs[first[i]:first[i + 1]]`` (the last phase to the end). Upgrade tests hold events back
    until a version runs, so that every version gets input however long the earlier steps
    took on a loaded machine.
    """
    cuts = [first] if isinstance(first, int) else list(first)
    gates = [gate] if isinstance(gate, threading.Event) else list(gate)
    assert len(cuts) == len(gates), "one gate per cut"
    produce_clicks(bootstrap, evs[: cuts[0]], rate)
    for i, phase_gate in enumerate(gates):
        if not phase_gate.wait(timeout):
            return
        end = cuts[i + 1] if i + 1 < len(cuts) else len(evs)
        produce_clicks(bootstrap, evs[cuts[i] : end], rate)


def produce_clicks_when(bootstrap: str, evs: list[dict[str, Any]], ready: Callable[[], Any],
                        rate: float = 0.0, timeout: float = 300.0) -> bool:
    """Produce ``evs`` once ``ready()`` is true (asked every 0.2 s); False if it never was.

    For a thread that feeds a version once it runs: a health watch that sees no input waits
    out its whole window (an idle topic cannot be judged), which costs the suite time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            go = ready()
        except Exception:  # e.g. a ledger read while a line is being written: ask again
            go = False
        if go:
            produce_clicks(bootstrap, evs, rate)
            return True
        time.sleep(0.2)
    return False


def read_outputs(bootstrap: str, expect: int, timeout: float = 120.0) -> list[Message]:
    return read_topic(bootstrap, "session-stats", schema=STATS, expect=expect, timeout=timeout,
                      idle=4.0)


def assert_exactly_once(
    outputs: list[Message],
    evs: list[dict[str, Any]],
    expected: dict[str, dict[str, Any]] | None = None,
) -> None:
    """One output per input event id, no more, and each equal to the reference."""
    assert all(m.value is not None for m in outputs), "an output does not decode"
    counts = collections.Counter(m.value["event_id"] for m in outputs if m.value)
    expected = expected if expected is not None else events.reference(evs)
    lost = set(expected) - set(counts)
    duplicated = {k: c for k, c in counts.items() if c > 1}
    unexpected = set(counts) - set(expected)
    assert (len(lost), len(duplicated), len(unexpected)) == (0, 0, 0), (
        f"lost {len(lost)} (e.g. {sorted(lost)[:5]}), duplicated {len(duplicated)} "
        f"(e.g. {list(duplicated.items())[:5]}), unexpected {len(unexpected)}"
    )
    wrong = [m.value for m in outputs if m.value != expected[m.value["event_id"]]]
    assert not wrong, f"{len(wrong)} outputs differ from the reference, e.g. {wrong[:2]}"


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
