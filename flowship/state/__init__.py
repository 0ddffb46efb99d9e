"""Versioned Avro state for PyFlink operators: ``@fs.stateful``, state kinds, ``fs.apply``.

The only place flowship touches PyFlink state descriptors (in ``_runtime``).
"""

from __future__ import annotations

from typing import Any

from flowship.errors import ConfigError
from flowship.state._declare import (
    STATE_LAYOUT,
    ListState,
    MapState,
    StatefulInfo,
    StateSpec,
    ValueState,
    info_of,
    registered,
    stateful,
)
from flowship.state._runtime import CONTROL_OF, KEY_OF

__all__ = [
    "STATE_LAYOUT",
    "ListState",
    "MapState",
    "StateSpec",
    "StatefulInfo",
    "ValueState",
    "apply",
    "registered",
    "stateful",
]


def apply(stream: Any, op: Any, output_type: Any = None, name: str | None = None) -> Any:
    """``stream.process(op)`` with the operator's stable uid (from ``@fs.stateful``) set.

    ``stream`` is a KeyedStream (``.key_by(...)``) or connected keyed streams.
    """
    info = info_of(op)
    if not hasattr(stream, "process"):
        msg = (
            f"flowship.apply({info.uid!r}): {type(stream).__name__} has no process(); key_by first"
        )
        raise ConfigError(msg)
    kind = type(stream).__name__
    if kind not in ("KeyedStream", "ConnectedStreams"):
        msg = (
            f"flowship.apply({info.uid!r}): keyed state needs a keyed stream, got {kind}; "
            "call .key_by(...) first"
        )
        raise ConfigError(msg)
    key_of = getattr(stream, KEY_OF, None)
    if key_of is not None:
        setattr(op, KEY_OF, key_of)
    if getattr(stream, CONTROL_OF, False):
        setattr(op, CONTROL_OF, True)
    return stream.process(op, output_type).uid(info.uid).name(name or info.uid)
