"""State handles at run time: Avro values in Flink state, never pickled.

Stored form (``STATE_LAYOUT``): each value is flowship's state encoding (format byte + writer
fingerprint + Avro binary, see :mod:`flowship.schema._state_codec`) mapped byte-for-byte onto a
latin-1 ``str`` and kept in a Flink ``STRING`` state. Why a string: PyFlink 2.2.1's byte-array
state is broken (``PRIMITIVE_ARRAY(BYTE)``), and its pickled types would unpickle savepoint
content on restore, which flowship never does. Flink's StringSerializer keeps the characters
exactly, in both execution modes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flowship.kafka._record import Record, encode_decisions
from flowship.schema import StateCodec
from flowship.state._declare import (
    ListState,
    MapState,
    StatefulInfo,
    StateSpec,
    ValueState,
)

_MISS = object()
_UNSET = object()
#: The attribute ``flowship.apply`` sets on an operator: the key selector of its keyed stream.
KEY_OF = "__flowship_key_of__"
#: Set (True) on a keyed stream of a source whose job follows a control topic, and copied onto
#: the operators ``flowship.apply`` applies to it: they remember each key's last decisions.
CONTROL_OF = "__flowship_control__"
#: The internal state holding, per key, the flag decisions of the last input record (JSON).
LAST_INPUT = "flowship.last-input"


class _Scope:
    """The element (or timer) being processed: its context and, once asked for, its key.

    ``key_of``: the keyed stream's key selector, when flowship keyed it (a source's
    ``key_by``). The current key is then ``key_of(element)``, computed in Python, instead of a
    call into the JVM for ``ctx.get_current_key()`` per element. Flink requires key selectors
    to be deterministic, so both are the same key. Timers have no element: they ask ``ctx``.
    """

    __slots__ = ("ctx", "element", "key", "key_of", "last", "last_seen")

    def __init__(self, key_of: Callable[[Any], Any] | None = None) -> None:
        self.ctx: Any = None
        self.element: Any = _UNSET
        self.key: Any = _UNSET
        self.key_of = key_of
        #: the LAST_INPUT state (only for operators on a stream whose job has a control plane)
        self.last: Any = None
        #: key -> the decisions last stored for it (saves a state write per record)
        self.last_seen: dict[Any, Any] = {}

    def remember(self, element: Any) -> None:
        """Keep the current key's last input decisions (for its timers' outputs)."""
        if self.last is None or type(element) is not Record:
            return
        decided = element[6]
        if decided is None:
            return
        if type(decided) is dict:  # a record built by hand
            decided = encode_decisions(decided)
        key = self.current_key()
        seen = self.last_seen
        try:
            if seen.get(key) == decided:
                return
            if len(seen) >= 10_000:
                seen.clear()
            seen[key] = decided
        except TypeError:  # an unhashable key: store every time
            pass
        self.last.update(decided)  # the wire form is the state's JSON

    def last_decisions(self) -> str | None:
        """The decisions of the current key's last input record (in a timer), or None."""
        if self.last is None:
            return None
        stored = self.last.value()
        return None if stored is None else str(stored)

    def timer_outputs(self, outputs: Any) -> Any:
        """A timer's outputs, each plain value carrying its key's last input decisions.

        The rule for outputs without an input record: they take the flag and routing decisions
        of the last input record of their key the operator processed (kept in keyed state, so
        the same after a restore). Records pass as they are.
        """
        decided = self.last_decisions()
        if decided is None or outputs is None:
            return outputs
        return (
            tuple.__new__(Record, (out, None, "", -1, -1, 0, decided))
            if isinstance(out, dict)
            else out
            for out in outputs
        )

    def begin(self, ctx: Any, element: Any = _UNSET) -> None:
        """A new element or timer: remember its context, forget the previous key."""
        self.ctx = ctx
        self.element = element
        self.key = _UNSET

    def current_key(self) -> Any:
        key = self.key
        if key is _UNSET:
            if self.key_of is not None and self.element is not _UNSET:
                key = self.key = self.key_of(self.element)
            else:
                key = self.key = self.ctx.get_current_key() if self.ctx is not None else None
        return key


class _Handle:
    __slots__ = ("_codec", "_name", "_scope", "_state", "_uid")

    def __init__(self, uid: str, name: str, codec: StateCodec, state: Any, scope: _Scope):
        self._uid = uid
        self._name = name
        self._codec = codec
        self._state = state
        self._scope = scope

    def _decode(self, raw: str) -> Any:
        return self._codec.decode(
            raw.encode("latin-1"), uid=self._uid, state=self._name, key=self._scope.current_key()
        )

    def _encode(self, value: Any) -> str:
        data = self._codec.encode(value, uid=self._uid, key=self._scope.current_key())
        return data.decode("latin-1")


class ValueHandle(_Handle):
    """A keyed value of a versioned Avro schema (see :class:`flowship.ValueState`).

    The cache maps a key to ``(stored string, decoded value or None)``. A decoded value is kept
    only when it holds nothing mutable (:meth:`StateCodec.snapshot`): ``value()`` then returns
    a shallow copy of it instead of decoding, and the caller may still mutate what it got.
    """

    __slots__ = ("_cache", "_cache_size", "_plain")

    def __init__(
        self, uid: str, name: str, codec: StateCodec, state: Any, scope: _Scope, cache_size: int
    ) -> None:
        super().__init__(uid, name, codec, state, scope)
        self._cache: dict[Any, tuple[str | None, dict[str, Any] | None]] = {}
        self._cache_size = cache_size
        self._plain = codec.decoded_is_plain()

    def _remember(self, key: Any, raw: str | None, decoded: dict[str, Any] | None) -> None:
        if self._cache_size <= 0:
            return
        cache = self._cache
        try:
            if key not in cache and len(cache) >= self._cache_size:
                del cache[next(iter(cache))]
            cache[key] = (raw, decoded)
        except TypeError:  # an unhashable key type: no cache for this operator
            self._cache_size = 0

    def value(self) -> Any:
        """The current key's value (resolved to the current schema version), or ``None``."""
        key = self._scope.current_key()
        entry = self._cache.get(key) if self._cache_size else None
        if entry is None:
            raw = self._state.value()
            decoded = None
        else:
            raw, decoded = entry
            if decoded is not None:
                return dict(decoded)  # plain fields only: a shallow copy shares nothing
        if raw is None:
            if entry is None:
                self._remember(key, None, None)
            return None
        value = self._decode(str(raw))
        if self._plain and type(value) is dict:
            self._remember(key, raw, dict(value))
        elif entry is None:
            self._remember(key, raw, None)
        return value

    def update(self, value: Any) -> None:
        """Store ``value`` (written in the current schema version) for the current key."""
        if value is None:
            self.clear()
            return
        raw = self._encode(value)
        self._state.update(raw)
        if self._cache_size:
            self._remember(self._scope.current_key(), raw, self._codec.snapshot(value))

    def clear(self) -> None:
        """Remove the current key's value."""
        self._state.clear()
        self._remember(self._scope.current_key(), None, None)


class MapHandle(_Handle):
    """A keyed map from ``str`` to values of a versioned Avro schema."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        raw = self._state.get(key)
        return default if raw is None else self._decode(raw)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        self._state.put(key, self._encode(value))

    def remove(self, key: str) -> None:
        """Remove ``key``."""
        self._state.remove(key)

    def contains(self, key: str) -> bool:
        """Whether ``key`` is present."""
        return bool(self._state.contains(key))

    def keys(self) -> Iterator[str]:
        """The map's keys."""
        yield from self._state.keys()

    def items(self) -> Iterator[tuple[str, Any]]:
        """The map's entries, values decoded."""
        for k, raw in self._state.items():
            yield k, self._decode(raw)

    def values(self) -> Iterator[Any]:
        """The map's values, decoded."""
        for _, value in self.items():
            yield value

    def is_empty(self) -> bool:
        """Whether the map has no entries."""
        return bool(self._state.is_empty())

    def clear(self) -> None:
        """Remove every entry of the current key's map."""
        self._state.clear()


class ListHandle(_Handle):
    """A keyed list of values of a versioned Avro schema."""

    __slots__ = ()

    def get(self) -> list[Any]:
        """The list (decoded); empty when unset."""
        return [self._decode(raw) for raw in (self._state.get() or [])]

    def add(self, value: Any) -> None:
        """Append ``value``."""
        self._state.add(self._encode(value))

    def update(self, values: list[Any]) -> None:
        """Replace the list with ``values``."""
        self._state.update([self._encode(v) for v in values])

    def clear(self) -> None:
        """Empty the list."""
        self._state.clear()


def _descriptor(name: str, spec: StateSpec) -> Any:
    from pyflink.common import Types
    from pyflink.datastream.state import (
        ListStateDescriptor,
        MapStateDescriptor,
        ValueStateDescriptor,
    )

    if isinstance(spec, MapState):
        return MapStateDescriptor(name, Types.STRING(), Types.STRING())
    if isinstance(spec, ListState):
        return ListStateDescriptor(name, Types.STRING())
    return ValueStateDescriptor(name, Types.STRING())


def open_handles(op: Any, info: StatefulInfo, runtime_context: Any) -> _Scope:
    """Create every declared state's handle on ``op``; return the scope the wrappers update."""
    scope = _Scope(getattr(op, KEY_OF, None))
    if getattr(op, CONTROL_OF, False) and getattr(op, "__flowship_timers__", False):
        from pyflink.common import Types
        from pyflink.datastream.state import ValueStateDescriptor

        scope.last = runtime_context.get_state(ValueStateDescriptor(LAST_INPUT, Types.STRING()))
    for name, spec in info.states.items():
        codec = StateCodec(spec.schema)
        if isinstance(spec, MapState):
            state = runtime_context.get_map_state(_descriptor(name, spec))
            handle: _Handle = MapHandle(info.uid, name, codec, state, scope)
        elif isinstance(spec, ListState):
            state = runtime_context.get_list_state(_descriptor(name, spec))
            handle = ListHandle(info.uid, name, codec, state, scope)
        else:
            assert isinstance(spec, ValueState)
            state = runtime_context.get_state(_descriptor(name, spec))
            handle = ValueHandle(info.uid, name, codec, state, scope, spec.cache_size)
        setattr(op, name, handle)
    return scope


def install(cls: type, info: StatefulInfo) -> None:
    """Wrap ``cls``'s open and element/timer callbacks so state handles know the current key."""
    cls.__flowship_stateful__ = info  # type: ignore[attr-defined]
    # only an operator with timers of its own needs its keys' last input decisions
    cls.__flowship_timers__ = any(  # type: ignore[attr-defined]
        "on_timer" in vars(klass)
        for klass in cls.__mro__
        if not klass.__module__.startswith("pyflink") and klass is not object
    )
    user_open = cls.open  # type: ignore[attr-defined]

    def open(self: Any, runtime_context: Any) -> None:
        self.__flowship_scope__ = open_handles(self, info, runtime_context)
        user_open(self, runtime_context)

    cls.open = open  # type: ignore[attr-defined]
    for method in ("process_element", "process_element1", "process_element2", "on_timer"):
        if method in vars(cls) or any(
            method in vars(b) for b in cls.__mro__[1:] if b.__module__.startswith("pyflink")
        ):
            setattr(cls, method, _scoped(getattr(cls, method), method))


def _scoped(fn: Any, method: str) -> Any:
    # ``call`` is pickled by value with the job's class (cloudpickle): it must not reference
    # module-level sentinels, which would arrive as copies; _Scope.begin (by reference) does.
    # Only process_element's element has the stream's key (timers have none, and each input
    # of connected streams has its own key selector)
    if method == "process_element":

        def call(self: Any, value: Any, ctx: Any) -> Any:
            scope = self.__flowship_scope__
            scope.begin(ctx, value)
            scope.remember(value)
            return fn(self, value, ctx)

    elif method == "on_timer":

        def call(self: Any, value: Any, ctx: Any) -> Any:
            scope = self.__flowship_scope__
            scope.begin(ctx)
            return scope.timer_outputs(fn(self, value, ctx))

    else:

        def call(self: Any, value: Any, ctx: Any) -> Any:
            self.__flowship_scope__.begin(ctx)
            return fn(self, value, ctx)

    call.__name__ = getattr(fn, "__name__", "call")
    call.__doc__ = getattr(fn, "__doc__", None)
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call
