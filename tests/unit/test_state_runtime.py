"""The state handles' logic without a JVM: fake Flink state, real codecs, real cloudpickle."""

from __future__ import annotations

from typing import Any

import cloudpickle
import pytest
from pyflink.datastream import KeyedProcessFunction

import flowship as fs
from flowship import errors

V1 = {"type": "record", "name": "Counter", "fields": [{"name": "n", "type": "long"}]}
V2 = {"type": "record", "name": "Counter",
      "fields": [{"name": "n", "type": "long"}, {"name": "tag", "type": "string", "default": "-"}]}


class FakeState:
    """Flink value state for one operator: a dict keyed by the context's current key."""

    def __init__(self, ctx: FakeCtx) -> None:
        self.ctx = ctx
        self.data: dict[Any, Any] = {}
        self.reads = 0

    def value(self) -> Any:
        self.reads += 1
        return self.data.get(self.ctx.key)

    def update(self, value: Any) -> None:
        assert isinstance(value, str), "flowship stores strings, never pickled objects"
        self.data[self.ctx.key] = value

    def clear(self) -> None:
        self.data.pop(self.ctx.key, None)


class FakeCtx:
    def __init__(self) -> None:
        self.key: Any = None

    def get_current_key(self) -> Any:
        return self.key


class FakeRuntimeContext:
    def __init__(self, ctx: FakeCtx) -> None:
        self.state = FakeState(ctx)

    def get_state(self, descriptor: Any) -> FakeState:
        return self.state


def make_operator(schema: fs.StateSchema, cache_size: int = 10_000) -> Any:
    # defined inside a function, so cloudpickle pickles the class by value, as it does for a
    # job script's classes (module __main__)
    @fs.stateful("counter", count=fs.ValueState(schema, cache_size=cache_size))
    class Counter(KeyedProcessFunction):
        def process_element(self, value: Any, ctx: Any) -> Any:
            current = self.count.value() or {"n": 0}
            current["n"] += value
            self.count.update(current)
            yield current["n"]

    return Counter()


def run(op: Any, ctx: FakeCtx, key: str, value: int) -> list[int]:
    ctx.key = key
    return list(op.process_element(value, ctx))


@pytest.mark.parametrize("cache_size", [0, 2, 10_000])
def test_values_are_per_key_after_cloudpickle_round_trip(cache_size: int) -> None:
    schema = fs.StateSchema("count", versions={1: V1})
    op = cloudpickle.loads(cloudpickle.dumps(make_operator(schema, cache_size)))
    ctx = FakeCtx()
    runtime = FakeRuntimeContext(ctx)
    op.open(runtime)
    sequence = ["a", "b", "a", "c", "a", "b", "d", "a"]
    results = [run(op, ctx, k, 1)[0] for k in sequence]
    assert results == [1, 1, 2, 1, 3, 2, 1, 4]
    if cache_size >= 4:
        # every key was read from Flink once; later reads came from the cache
        assert runtime.state.reads == 4


def test_cached_reads_return_fresh_objects() -> None:
    schema = fs.StateSchema("count", versions={1: V1})
    op = make_operator(schema)
    ctx = FakeCtx()
    op.open(FakeRuntimeContext(ctx))
    run(op, ctx, "k", 5)
    first = op.count.value()
    first["n"] = 999  # mutating a returned value must not change state
    assert op.count.value() == {"n": 5}


def test_old_version_values_resolve_and_are_written_back_in_current_version() -> None:
    ctx = FakeCtx()
    v1_op = make_operator(fs.StateSchema("count", versions={1: V1}))
    runtime = FakeRuntimeContext(ctx)
    v1_op.open(runtime)
    run(v1_op, ctx, "k", 3)
    stored_v1 = runtime.state.data["k"]

    v2_schema = fs.StateSchema("count", versions={1: V1, 2: V2})
    v2_op = make_operator(v2_schema)
    v2_runtime = FakeRuntimeContext(ctx)
    v2_runtime.state.data = {"k": stored_v1}
    v2_op.open(v2_runtime)
    ctx.key = "k"
    assert v2_op.count.value() == {"n": 3, "tag": "-"}
    run(v2_op, ctx, "k", 1)
    assert v2_runtime.state.data["k"] != stored_v1
    assert v2_runtime.state.data["k"].encode("latin-1")[1:9] == \
        v2_schema.fingerprint(2).to_bytes(8, "little")


def test_corrupt_state_bytes_raise_state_error_naming_everything() -> None:
    schema = fs.StateSchema("count", versions={1: V1})
    op = make_operator(schema)
    ctx = FakeCtx()
    runtime = FakeRuntimeContext(ctx)
    runtime.state.data["user-7"] = "\x01garbage-not-a-fingerprint"
    op.open(runtime)
    with pytest.raises(errors.StateError) as info:
        run(op, ctx, "user-7", 1)
    text = str(info.value)
    for part in ("'counter'", "'count'", "'user-7'", "fingerprint"):
        assert part in text
    assert runtime.state.data["user-7"] == "\x01garbage-not-a-fingerprint"  # nothing overwritten


def test_stateful_validation_at_import_time() -> None:
    schema = fs.StateSchema("count", versions={1: V1})
    with pytest.raises(errors.ConfigError, match="not a subclass of KeyedProcessFunction"):
        fs.stateful("x", s=fs.ValueState(schema))(object)
    with pytest.raises(errors.ConfigError, match="declares no state"):
        fs.stateful("x")
    with pytest.raises(errors.ConfigError, match="clashes with attribute"):
        @fs.stateful("x", open=fs.ValueState(schema))
        class Clash(KeyedProcessFunction):
            pass
    with pytest.raises(errors.ConfigError, match="not a valid stable uid"):
        fs.stateful("bad uid", s=fs.ValueState(schema))


def test_duplicate_uid_in_one_module_is_refused() -> None:
    schema = fs.StateSchema("count", versions={1: V1})

    @fs.stateful("dup-uid", s=fs.ValueState(schema))
    class First(KeyedProcessFunction):
        pass

    with pytest.raises(errors.ConfigError, match="already used by"):
        @fs.stateful("dup-uid", s=fs.ValueState(schema))
        class Second(KeyedProcessFunction):
            pass


def test_apply_needs_a_keyed_stream() -> None:
    op = make_operator(fs.StateSchema("count", versions={1: V1}))

    class NotKeyed:
        def process(self, *args: Any) -> None:
            raise AssertionError("must not be called")

    with pytest.raises(errors.ConfigError, match="key_by"):
        fs.apply(NotKeyed(), op)


class CountingCtx(FakeCtx):
    """A context that counts how often the current key is asked of it (a JVM call in Flink)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def get_current_key(self) -> Any:
        self.asked += 1
        return self.key


def test_with_the_streams_key_selector_the_key_comes_from_the_element() -> None:
    """``fs.apply`` on a stream flowship keyed: no per-element ``get_current_key`` call."""
    from flowship.state._runtime import KEY_OF

    schema = fs.StateSchema("count", versions={1: V1})
    op = make_operator(schema)
    setattr(op, KEY_OF, lambda value: f"user-{value % 3}")  # what flowship.apply sets
    op = cloudpickle.loads(cloudpickle.dumps(op))
    ctx = CountingCtx()
    runtime = FakeRuntimeContext(ctx)
    op.open(runtime)
    totals = []
    for value in [3, 4, 6, 7, 5]:
        ctx.key = f"user-{value % 3}"  # what Flink's keyBy made current
        totals.extend(op.process_element(value, ctx))
    assert totals == [3, 4, 9, 11, 5]
    assert ctx.asked == 0
    assert sorted(runtime.state.data) == ["user-0", "user-1", "user-2"]


def test_apply_hands_a_flowship_keyed_streams_selector_to_the_operator() -> None:
    from flowship.state._runtime import KEY_OF

    op = make_operator(fs.StateSchema("count", versions={1: V1}))

    class KeyedStream:  # the name flowship.apply checks; process() returns what uid() needs
        def __init__(self, selector: Any) -> None:
            if selector is not None:
                setattr(self, KEY_OF, selector)

        def process(self, *args: Any) -> Any:
            return self

        def uid(self, uid: str) -> Any:
            return self

        def name(self, name: str) -> Any:
            return self

    fs.apply(KeyedStream(None), op)  # a stream keyed by PyFlink itself: the JVM is asked
    assert not hasattr(op, KEY_OF)
    selector = len
    fs.apply(KeyedStream(selector), op)
    assert getattr(op, KEY_OF) is selector


DOUBLE = {"type": "record", "name": "Mean", "fields": [
    {"name": "sum", "type": "double"}, {"name": "tag", "type": ["null", "string"]}]}
NESTED = {"type": "record", "name": "Seen", "fields": [
    {"name": "pages", "type": {"type": "array", "items": "string"}}]}


def make_generic(schema: fs.StateSchema, cache_size: int) -> Any:
    @fs.stateful("generic", s=fs.ValueState(schema, cache_size=cache_size))
    class Generic(KeyedProcessFunction):
        def process_element(self, value: Any, ctx: Any) -> Any:
            yield self.s.value()

    return Generic()


@pytest.mark.parametrize(
    ("avro", "written"),
    [
        (V1, {"n": 3}),
        (DOUBLE, {"sum": 3, "tag": None}),  # an int in a double field reads back a float
        (DOUBLE, {"sum": 2.5, "tag": "x"}),
        (NESTED, {"pages": ["/a", "/b"]}),  # mutable: never cached decoded
    ],
)
def test_cached_values_equal_what_decoding_the_stored_bytes_gives(
    avro: dict[str, Any], written: dict[str, Any]
) -> None:
    schema = fs.StateSchema("s", versions={1: avro})
    cached, uncached = make_generic(schema, 10), make_generic(schema, 0)
    ctx = FakeCtx()
    ctx.key = "k"
    cached.open(FakeRuntimeContext(ctx))
    uncached.open(FakeRuntimeContext(ctx))
    for handle in (cached.s, uncached.s):
        handle._scope.begin(ctx)
        handle.update(dict(written))
    first, second = cached.s.value(), cached.s.value()
    expected = uncached.s.value()  # decoded from the stored bytes
    assert first == second == expected
    assert [type(v) for v in first.values()] == [type(v) for v in expected.values()]
    assert list(first) == list(expected)
    assert first is not second
    first.clear()  # mutating a returned value changes nothing stored
    if "pages" in second:
        second["pages"].append("/c")
    assert cached.s.value() == expected


def test_a_plain_value_read_from_flink_is_decoded_once() -> None:
    schema = fs.StateSchema("count", versions={1: V1})
    op = make_operator(schema)
    ctx = FakeCtx()
    runtime = FakeRuntimeContext(ctx)
    op.open(runtime)
    run(op, ctx, "k", 2)
    stored = runtime.state.data["k"]
    fresh = make_operator(schema)  # a restored operator: empty cache, state in Flink
    fresh_runtime = FakeRuntimeContext(ctx)
    fresh_runtime.state.data = {"k": stored}
    fresh.open(fresh_runtime)
    decodes = []
    codec = fresh.count._codec
    original = codec.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return original(*args, **kwargs)

    codec.decode = counting
    fresh.count._scope.begin(ctx)
    assert fresh.count.value() == {"n": 2}
    assert fresh.count.value() == {"n": 2}
    assert len(decodes) == 1 and fresh_runtime.state.reads == 1
