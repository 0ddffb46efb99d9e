"""Declaring state: ``@fs.stateful`` and the state kinds (no PyFlink import here)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from flowship.errors import ConfigError
from flowship.kafka._declare import check_uid
from flowship.schema import StateSchema

#: How flowship lays state out in Flink (recorded in manifests; a change is checked on upgrade).
STATE_LAYOUT = "flowship-avro-latin1-string/1"
CACHE_SIZE = 10_000

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class StateSpec:
    """Base of the state kinds: the schema of the values and how Flink holds them."""

    schema: StateSchema
    kind: ClassVar[str] = ""

    def describe(self) -> dict[str, Any]:
        """JSON-serializable description for manifests."""
        return {"kind": self.kind, "layout": STATE_LAYOUT, **self.schema.describe()}


@dataclass(frozen=True)
class ValueState(StateSpec):
    """One value per key: ``handle.value()`` (``None`` when unset), ``update(v)``, ``clear()``.

    Reads are served from a write-through cache of the stored bytes of the last ``cache_size``
    keys the operator touched (0 disables it); each read decodes a fresh value, so mutating what
    ``value()`` returned never changes state behind Flink's back.
    """

    cache_size: int = CACHE_SIZE
    kind: ClassVar[str] = "value"


@dataclass(frozen=True)
class MapState(StateSpec):
    """A map per key from ``str`` to values of ``schema``: get/put/remove/contains/items/..."""

    kind: ClassVar[str] = "map"


@dataclass(frozen=True)
class ListState(StateSpec):
    """A list per key of values of ``schema``: ``get()``, ``add(v)``, ``update(vs)``, ``clear``."""

    kind: ClassVar[str] = "list"


@dataclass(frozen=True)
class StatefulInfo:
    """What ``@fs.stateful`` recorded about an operator class."""

    uid: str
    states: dict[str, StateSpec]
    cls_name: str
    module: str

    def describe(self) -> dict[str, Any]:
        """JSON-serializable description for manifests."""
        return {
            "uid": self.uid,
            "class": self.cls_name,
            "states": {name: spec.describe() for name, spec in sorted(self.states.items())},
        }


# module name -> uid -> info; a job's manifest lists the operators of its own module
_REGISTRY: dict[str, dict[str, StatefulInfo]] = {}

_SUPPORTED = ("KeyedProcessFunction", "KeyedCoProcessFunction")


def registered(module: str) -> dict[str, StatefulInfo]:
    """The stateful operators declared in ``module`` (by uid)."""
    return dict(_REGISTRY.get(module, {}))


def stateful(uid: str, **states: StateSpec) -> Callable[[T], T]:
    """Give a PyFlink keyed function class a stable uid and versioned Avro state.

    ::

        @fs.stateful("session-stats", session=fs.ValueState(SESSION))
        class SessionStats(KeyedProcessFunction):
            def process_element(self, record, ctx):
                current = self.session.value()
                ...

    Each keyword becomes an attribute holding the state's handle once the operator is open.
    Apply the operator with :func:`flowship.apply`, which sets the PyFlink uid. Everything is
    checked now, at import time: the uid, the state names, the class.
    """
    check_uid(uid, "@fs.stateful")
    if not states:
        msg = (
            f"@fs.stateful({uid!r}) declares no state; pass e.g. "
            "session=fs.ValueState(SCHEMA), or drop the decorator for a stateless operator"
        )
        raise ConfigError(msg)
    for name, spec in states.items():
        if not isinstance(spec, StateSpec):
            msg = (
                f"@fs.stateful({uid!r}): state {name!r} is {type(spec).__name__}; use "
                "fs.ValueState(schema), fs.MapState(schema) or fs.ListState(schema)"
            )
            raise ConfigError(msg)

    def decorate(cls: T) -> T:
        if not inspect.isclass(cls) or not any(b.__name__ in _SUPPORTED for b in cls.__mro__):
            msg = (
                f"@fs.stateful({uid!r}) decorates {getattr(cls, '__name__', cls)!r}, which "
                f"is not a subclass of {' or '.join(_SUPPORTED)}; did you forget the base "
                "class?"
            )
            raise ConfigError(msg)
        for name in states:
            if hasattr(cls, name):
                msg = (
                    f"@fs.stateful({uid!r}) on {cls.__name__}: state name {name!r} clashes "
                    f"with attribute {cls.__name__}.{name}; rename the state"
                )
                raise ConfigError(msg)
        module = cls.__module__
        known = _REGISTRY.setdefault(module, {})
        previous = known.get(uid)
        if previous is not None and previous.cls_name != cls.__qualname__:
            msg = (
                f"@fs.stateful: uid {uid!r} is already used by {previous.cls_name} in "
                f"{module}; every stateful operator needs its own uid"
            )
            raise ConfigError(msg)
        info = StatefulInfo(uid=uid, states=dict(states), cls_name=cls.__qualname__, module=module)
        known[uid] = info
        from flowship.state._runtime import install

        install(cls, info)
        return cls

    return decorate


def info_of(obj: Any) -> StatefulInfo:
    """The ``@fs.stateful`` info of an operator instance or class, or ConfigError."""
    info = getattr(obj, "__flowship_stateful__", None)
    if not isinstance(info, StatefulInfo):
        name = type(obj).__name__ if not inspect.isclass(obj) else obj.__name__
        msg = f"{name} is not decorated with @fs.stateful; flowship.apply needs a stateful operator"
        raise ConfigError(msg)
    return info
