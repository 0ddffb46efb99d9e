"""Flags, rules and the control log's fold: pure logic, no Kafka."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest

import flowship as fs
from flowship.control import Flag, FlagConfig, bucket, parse_rules
from flowship.control._rules import Where, compile_flag
from flowship.control._view import ControlView
from flowship.errors import ConfigError, FlagError
from flowship.kafka import Record
from flowship.kafka._record import decisions_of, encode_decisions


def test_boolean_and_variant_flags() -> None:
    flag = Flag("new-pricing", default=True)
    assert flag.default_variant == "on" and flag.values == {"on": True, "off": False}
    tier = Flag("tier", variants={"basic": 1.0, "gold": 1.2}, default="gold")
    assert tier.value_of("gold") == 1.2 and tier.type == "number"
    assert Flag.from_description(tier.describe()) == tier


@pytest.mark.parametrize("make", [
    lambda: Flag("Bad Key"),
    lambda: Flag("x", default="yes"),
    lambda: Flag("x", variants={"a": 1}, default="b"),
    lambda: Flag("x", variants={}, default="a"),
    lambda: Flag("x", variants={"a": [1]}, default="a"),
    lambda: Flag("flowship.mine"),
])
def test_bad_declarations_are_refused_at_import(make) -> None:
    with pytest.raises(FlagError):
        make()


def test_job_refuses_duplicate_flags() -> None:
    src = fs.KafkaSource(uid="s", topic="t", schema={"type": "record", "name": "R",
                                                     "fields": [{"name": "a", "type": "int"}]})
    with pytest.raises(ConfigError, match="more than once"):
        fs.Job("j", version="1", sources=[src], sinks=[], flags=[Flag("f"), Flag("f")])
    job = fs.Job("j", version="1", sources=[src], sinks=[], flags=[Flag("f")])
    assert job.control and job.control_topic == "j.control"
    assert job.manifest()["flags"] == [Flag("f").describe()]


@pytest.mark.parametrize("text, why", [
    (["percent=101:on"], "outside 0-100"),
    (["percent=-1:on"], "outside 0-100"),
    (["percent=abc:on"], "not a number"),
    (["partitions=a:on"], "whole numbers"),
    (["partitions=1,4"], "names no variant"),
    (["colour=red:on"], "unknown match"),
    (["default:off", "all:on"], "nothing may follow"),
    ([], "no rules"),
])
def test_malformed_rules_say_what_and_how(text, why) -> None:
    with pytest.raises(FlagError, match=why):
        parse_rules(text)


def test_rules_round_trip_and_variants_are_checked() -> None:
    config = parse_rules(["partitions=4,1:on", "percent=30:on", "field.tenant=a,b:on",
                          "default:off"])
    assert config.text() == "partitions=1,4:on percent=30.0:on field.tenant=a,b:on default:off"
    assert FlagConfig.from_description(json.loads(json.dumps(config.describe()))) == config
    with pytest.raises(FlagError, match="no variant 'gold'"):
        parse_rules(["all:gold"]).check(Flag("f"))
    assert parse_rules(["none"]) == FlagConfig()


def test_bucketing_is_launchdarkly_sha1_and_stable() -> None:
    digest = hashlib.sha1(b"flag.user-1").hexdigest()
    assert bucket("flag", b"user-1") == int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF * 100
    inside = {k for k in range(2000) if bucket("f", str(k).encode()) < 30}
    assert 500 < len(inside) < 700  # about 30 %
    assert inside <= {k for k in range(2000) if bucket("f", str(k).encode()) < 40}


def test_compile_decides_static_rules_once() -> None:
    flag = Flag("f")
    here = Where("t", 1, "prod", "2")
    assert compile_flag(flag, parse_rules(["partitions=1:on"]), here) == (True, True)
    assert compile_flag(flag, parse_rules(["partitions=2:on"]), here) == (True, False)
    assert compile_flag(flag, parse_rules(["env=prod:on"]), here) == (True, True)
    assert compile_flag(flag, parse_rules(["version=1:on"]), here) == (True, False)
    fixed, evaluate = compile_flag(flag, parse_rules(["field.tenant=a:on", "all:off"]), here)
    assert not fixed
    assert evaluate(None, {"tenant": "a"}) is True
    assert evaluate(None, {"tenant": "b"}) is False
    # a rule naming a variant this version lacks is skipped, not a crash in the job
    assert compile_flag(flag, parse_rules(["all:gold"]), here) == (True, False)


def test_conjunctions_hold_only_where_every_condition_does() -> None:
    route = Flag("r", default="production", variants={"production": "production", "side": "side"})
    # a canary on partitions 0 and 3: version 2 serves them, version 1 sends its own aside
    canary = parse_rules(["version=2&partitions=0,3:production", "version=2:side",
                          "partitions=0,3:side"])
    assert canary.text() == ("version=2&partitions=0,3:production version=2:side "
                             "partitions=0,3:side")
    assert FlagConfig.from_description(json.loads(json.dumps(canary.describe()))) == canary
    decided = {
        (version, partition): compile_flag(route, canary, Where("t", partition, "e", version))
        for version in ("1", "2") for partition in range(4)
    }
    assert decided == {
        ("1", 0): (True, "side"), ("1", 1): (True, "production"), ("1", 2): (True, "production"),
        ("1", 3): (True, "side"), ("2", 0): (True, "production"), ("2", 1): (True, "side"),
        ("2", 2): (True, "side"), ("2", 3): (True, "production"),
    }
    # with one dynamic condition: static conditions are decided once, the rest per record
    flag = Flag("f")
    config = parse_rules(["env=prod&field.tenant=a:on"])
    fixed, evaluate = compile_flag(flag, config, Where("t", 0, "prod", "1"))
    assert not fixed and evaluate(None, {"tenant": "a"}) is True
    assert evaluate(None, {"tenant": "b"}) is False
    assert compile_flag(flag, config, Where("t", 0, "staging", "1")) == (True, False)


@pytest.mark.parametrize("text, why", [
    (["percent=10&field.t=a:on"], "at most one percent or field"),
    (["all&partitions=1:on"], "'all' goes alone"),
    (["partitions=1&:on"], "takes values"),
    (["version=2&colour=red:on"], "unknown match"),
])
def test_malformed_conjunctions_say_what(text, why) -> None:
    with pytest.raises(FlagError, match=why):
        parse_rules(text)


def _propose(view: ControlView, at: int, pid: str, flag: str, rules: list[str],
             cuts: dict[int, int]) -> None:
    value = {"flag": flag, "config": parse_rules(rules).describe(),
             "cuts": {"t": {str(p): o for p, o in cuts.items()}}, "timeout_ms": 1000, "by": "me"}
    view.apply(f"propose/{pid}", json.dumps(value).encode(), at, at)


def test_the_first_decision_in_the_log_counts_and_cuts_apply_by_offset() -> None:
    view = ControlView()
    _propose(view, 0, "p1", "f", ["all:on"], {0: 100, 1: 50})
    plan = view.plan()
    assert plan.segment("t", 0, 99) == (0, 100, None)
    assert plan.segment("t", 0, 100)[2] is not None  # at an undecided cut: wait
    view.apply("abort/p1", b'{"reason": "instance timed out"}', 1, 1)
    view.apply("commit/p1", b"{}", 2, 2)  # too late: the abort came first
    assert view.proposals["p1"].decision == "abort"
    assert view.plan().config_at("f", "t", 0, 500) is None
    _propose(view, 3, "p2", "f", ["all:on"], {0: 100, 1: 50})
    view.apply("ack/p2/i-1", b"{}", 4, 4)
    view.apply("commit/p2", b"{}", 5, 5)
    _propose(view, 6, "p3", "f", ["partitions=1:on"], {0: 200, 1: 60})
    view.apply("commit/p3", b"{}", 7, 7)
    plan = view.plan()
    assert view.proposals["p2"].acks == {"i-1"}
    assert plan.config_at("f", "t", 0, 99) is None
    assert plan.config_at("f", "t", 0, 100) == parse_rules(["all:on"])
    assert plan.config_at("f", "t", 0, 200) == parse_rules(["partitions=1:on"])
    assert plan.config_at("f", "t", 7, 0) == parse_rules(["partitions=1:on"])  # a new partition
    assert plan.segment("t", 0, 150) == (100, 200, None)


def test_instances_live_by_beat_and_a_new_attempt_replaces_the_dead_one() -> None:
    view = ControlView()
    hello = {"job": "j", "version": "1", "source": "s", "topic": "t", "group": "g",
             "subtask": 0, "flags": []}
    view.apply("hello/a", json.dumps(hello).encode(), 0, 1_000)
    assert [i.id for i in view.live(5_000)] == ["a"]
    assert view.live(20_000) == []
    view.apply("hello/b", json.dumps(hello).encode(), 1, 3_000)
    assert [i.id for i in view.live(5_000)] == ["b"]
    view.apply("hello/b", None, 2, 4_000)  # goodbye
    assert view.live(5_000) == []


def test_records_carry_decisions_through_pickling() -> None:
    record = Record({"a": 1}, b"k", "t", 0, 5, 0, {"f": True})
    again = pickle.loads(pickle.dumps(record))
    assert again.flag("f") is True and again.with_value({"b": 2}).flag("f") is True
    with pytest.raises(FlagError, match="not declared"):
        again.flag("g")
    with pytest.raises(FlagError, match="carries no flag decisions"):
        Record({"a": 1}, None, "t", 0, 5, 0).flag("f")


def test_records_carry_decisions_in_wire_form_with_their_types() -> None:
    # what the decoder hands on: one canonical JSON string per distinct decisions, which
    # pickles as one copy; read back, every value keeps its type (1, True and 1.0 differ)
    decisions = {"n": 1, "b": True, "x": 1.0, "s": "gold", "flowship.route": "side"}
    wire = encode_decisions(decisions)
    assert wire == '{"b":true,"flowship.route":"side","n":1,"s":"gold","x":1.0}'
    record = Record({"a": 1}, b"k", "t", 0, 5, 0, wire)
    again = pickle.loads(pickle.dumps(record))
    for key, value in decisions.items():
        assert again.flag(key) == value and type(again.flag(key)) is type(value)
    assert again.decisions == decisions
    assert again.with_value({"b": 2}).decisions is again.decisions  # shared, not re-decoded
    assert len(pickle.dumps(record)) < len(pickle.dumps(record._replace(decided=decisions)))
    with pytest.raises(FlagError, match=r"not declared on this job \(declared: \['b', 'n'"):
        again.flag("missing")


class _Agent:
    """What a Decider reads of its agent: the claimed positions, a fresh view, the plan."""

    def __init__(self, plan: object) -> None:
        self.positions: dict[int, int] = {}
        self.fresh_at = float("inf")
        self.plan = plan


def _reference(flag: Flag, rules: list[str], partition: int, key: bytes | None,
               value: dict) -> object:
    """The first matching rule's value, else the default: the rules' definition, per record."""
    config = parse_rules(rules)
    values = flag.values
    for rule in config.rules:
        if rule.match == "all" or (rule.match == "partitions" and partition in rule.values):
            return values[rule.variant]
        if rule.match == "field" and str(value.get(rule.field)) in {str(v) for v in rule.values}:
            return values[rule.variant]
        if rule.match == "percent" and key is not None and bucket(flag.key, key) < rule.values[0]:
            return values[rule.variant]
    return values[config.default or flag.default_variant]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_decider_gives_each_record_its_rules_values(count: int) -> None:
    from flowship.control._agent import Decider

    flags = [
        Flag("ramp", default=False),
        Flag("tier", variants={"basic": 1, "gold": True, "odd": 1.0}, default="basic"),
        Flag("beta", default=False),
        Flag("color", variants={"red": "r", "blue": "b"}, default="red"),
    ]
    rules = {
        "ramp": ["percent=30:on"],
        "tier": ["field.page=/cart:gold", "percent=50:odd"],  # 1, True, 1.0: equal in Python
        "beta": ["partitions=1:on"],
        "color": ["field.page=/home,/cart:blue", "default:red"],
    }
    view = ControlView()
    for i, flag in enumerate(flags[:count]):
        _propose(view, 2 * i, f"p{i}", flag.key, rules[flag.key], {0: 10, 1: 10})
        view.apply(f"commit/p{i}", b"{}", 2 * i + 1, 2 * i + 1)
    decider = Decider(_Agent(view.plan()), "t", flags, "prod", "1")  # type: ignore[arg-type]
    pages = ["/home", "/cart", "/checkout"]
    for partition in (0, 1):
        for offset in range(40):
            key = f"user-{offset % 13}".encode() if offset % 7 else None
            value = {"page": pages[offset % 3]}
            got = decisions_of(decider.decide(partition, offset, key, value))
            assert got is not None
            for j, flag in enumerate(flags):
                want = (_reference(flag, rules[flag.key], partition, key, value)
                        if j < count and offset >= 10 else flag.value_of(flag.default_variant))
                assert got[flag.key] == want and type(got[flag.key]) is type(want), (
                    flag.key, partition, offset)
            assert got["flowship.route"] == "production"




def test_memoized_decisions_tell_field_values_apart_by_their_text() -> None:
    """The decoder keeps decisions per (key, field text): 1, True and "1" are not one entry."""
    from flowship.control._agent import Decider

    flags = [
        Flag("ramp", default=False),
        Flag("tier", variants={"basic": 1, "gold": True, "odd": 1.0}, default="basic"),
        Flag("color", variants={"red": "r", "blue": "b"}, default="red"),
    ]
    rules = {
        "ramp": ["percent=30:on"],
        "tier": ["field.page=1:gold", "percent=50:odd"],
        "color": ["field.page=True,/cart:blue"],
    }
    view = ControlView()
    for i, flag in enumerate(flags):
        _propose(view, 2 * i, f"p{i}", flag.key, rules[flag.key], {0: 0})
        view.apply(f"commit/p{i}", b"{}", 2 * i + 1, 2 * i + 1)
    decider = Decider(_Agent(view.plan()), "t", flags, "prod", "1")  # type: ignore[arg-type]
    pages: list[object] = [1, True, "1", "True", 1.0, None, ["1"], "/cart", "/home"]
    for offset in range(2000):  # keys and pages repeat: most decisions come from the memo
        key = f"user-{offset % 7}".encode() if offset % 11 else None
        value = {"page": pages[(offset // 7) % len(pages)]}
        got = decisions_of(decider.decide(0, offset, key, value))
        assert got is not None
        for flag in flags:
            want = _reference(flag, rules[flag.key], 0, key, value)
            assert got[flag.key] == want and type(got[flag.key]) is type(want), (flag.key, value)
    # a value that is not a dict has no fields: only the key decides
    got = decisions_of(decider.decide(0, 5000, b"user-1", "not a dict"))
    assert got is not None and got["color"] == "r"


class _QuietLog:
    """A control log with nothing new to read: counts the agent's wake-ups and end queries."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.view = ControlView()
        self.topic = "job.control"
        self.polls: list[float] = []
        self.ends = 0
        self.writes: list[str] = []

    def check_exists(self, timeout: float = 10.0) -> None:
        pass

    def read_to_end(self, timeout: float = 30.0) -> ControlView:
        return self.view

    def end(self, timeout: float = 10.0) -> int:
        self.ends += 1
        return self.view.position

    def poll(self, timeout: float = 0.1, max_records: int = 500) -> int:
        self.polls.append(timeout)
        import time

        time.sleep(timeout)  # what a consumer does when nothing arrives
        return 0

    def write(self, key: str, value: object, *, flush: bool = True) -> None:
        self.writes.append(key)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("passive", [False, True])
def test_an_idle_agent_wakes_about_once_a_second_and_stays_fresh(monkeypatch, passive) -> None:
    # every wake-up of the agent's thread takes the GIL from the decoders: on an idle control
    # topic it wakes for its beat and its end check (once a second), never in a tight loop
    # (a passive rehearsal agent, which never beats, included)
    import time

    from flowship.control import _agent

    monkeypatch.setattr(_agent, "ControlLog", _QuietLog)
    agent = _agent.Agent("127.0.0.1:9", "job.control", job="job", version="1", source="s",
                         source_topic="t", group="g", subtask=0, flags=[],
                         environment="default", passive=passive)
    agent.start()
    started = time.monotonic()
    time.sleep(3.5)
    log = agent._log
    polls, ends = len(log.polls), log.ends  # type: ignore[attr-defined]
    fresh_age = time.monotonic() - agent.fresh_at
    agent.stop()
    assert agent.error is None
    assert 3 <= polls <= 6, log.polls  # type: ignore[attr-defined]
    assert 3 <= ends <= 5
    assert fresh_age < 1.5 < _agent.STALE_S  # the decoder never waits for a fresh view
    beats = [k for k in log.writes if k.startswith("beat/")]  # type: ignore[attr-defined]
    assert (len(beats) >= 4) != passive  # 3 in the thread, 1 goodbye tombstone
    assert time.monotonic() - started < 8  # stop() does not wait out a long poll


class _EchoLog(_QuietLog):
    """A control log whose reader sees this instance's own writes: a write ends a poll at once."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        import threading

        self.records: list[tuple[str, object]] = []
        self.woken = 0
        self._arrived = threading.Event()

    def poll(self, timeout: float = 0.1, max_records: int = 500) -> int:
        self.polls.append(timeout)
        if self._arrived.wait(timeout):
            self._arrived.clear()
            self.woken += 1
        return 0

    def write(self, key: str, value: object, *, flush: bool = True) -> None:
        self.records.append((key, value))
        self._arrived.set()


def test_an_agents_goodbye_is_its_last_beat_and_wakes_its_thread(monkeypatch) -> None:
    # stop() says goodbye (tombstones) before it joins the thread: the goodbye wakes the thread
    # from its poll of the control topic instead of waiting out the poll (a job's end and every
    # upgrade's stop waited up to a second per decoder), and no beat may follow the goodbye, or
    # a setter would wait for the acknowledgement of an instance that is gone
    import random
    import time

    from flowship.control import _agent

    monkeypatch.setattr(_agent, "ControlLog", _EchoLog)
    monkeypatch.setattr(_agent, "BEAT_S", 0.01)  # beats race the goodbye
    rng = random.Random(7)
    for _ in range(60):
        agent = _agent.Agent("127.0.0.1:9", "job.control", job="job", version="1", source="s",
                             source_topic="t", group="g", subtask=0, flags=[],
                             environment="default")
        agent.start()
        time.sleep(rng.uniform(0, 0.05))
        log = agent._log
        agent.stop()
        assert agent.error is None
        assert agent._thread is not None and not agent._thread.is_alive()
        beats = [v for k, v in log.records if k.startswith("beat/")]  # type: ignore[attr-defined]
        assert beats[-1] is None, beats[-3:]
        assert log.records[-1] == (f"hello/{agent.id}", None)  # type: ignore[attr-defined]


def test_an_agent_stopped_in_a_long_poll_is_woken_by_its_goodbye(monkeypatch) -> None:
    import time

    from flowship.control import _agent

    monkeypatch.setattr(_agent, "ControlLog", _EchoLog)
    agent = _agent.Agent("127.0.0.1:9", "job.control", job="job", version="1", source="s",
                         source_topic="t", group="g", subtask=0, flags=[],
                         environment="default")
    agent.start()
    time.sleep(1.5)  # the thread is in a poll of up to a second, its beat written
    log = agent._log
    woken = log.woken  # type: ignore[attr-defined]
    agent.stop()
    assert not agent._thread.is_alive()  # type: ignore[union-attr]
    assert log.woken > woken  # type: ignore[attr-defined]  # the goodbye ended the poll
