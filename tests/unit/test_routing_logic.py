"""Who serves production when versions run side by side: the routing guard, pure Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.control._flags import PRODUCTION, SIDE, route_flag
from flowship.control._routing import RunningVersion, check_routing, served, serving_config
from flowship.control._rules import FlagConfig, Where, compile_flag, parse_rules
from flowship.deploy.machine import Step, TransitionError, check_transition
from flowship.deploy.side_by_side import describe_serve, parse_partitions, serves
from flowship.errors import ConfigError, FlagError

OLD, NEW = RunningVersion("1"), RunningVersion("2", shadow=True)
INPUTS = {"clicks": range(6)}


def test_a_version_started_beside_another_routes_aside_unless_a_rule_says_production() -> None:
    where = Where("clicks", 0, "default", "2")
    assert compile_flag(route_flag(True), None, where) == (True, SIDE)
    assert compile_flag(route_flag(False), None, where) == (True, PRODUCTION)
    # a default in force does not change a side-by-side version's own default...
    assert served(parse_rules(["version=9:side"]), [OLD, NEW], INPUTS)[("clicks", 0)] == ["1"]
    # ...but an explicit default does, which is why the guard exists
    both = parse_rules(["default:production"])
    assert served(both, [OLD, NEW], INPUTS)[("clicks", 0)] == ["1", "2"]
    with pytest.raises(FlagError, match="from versions 1 and 2 at once"):
        check_routing(both, [OLD, NEW], INPUTS)


@pytest.mark.parametrize(
    ("serve", "new_serves"),
    [([0, 3], {0, 3}), (None, set(range(6))), ([], set())],
)
def test_serving_config_gives_each_partition_to_exactly_one_version(
    serve: list[int] | None, new_serves: set[int]
) -> None:
    config = serving_config("2", "1", serve)
    who = served(config, [OLD, NEW], INPUTS)
    for (_, partition), versions in who.items():
        assert versions == (["2"] if partition in new_serves else ["1"]), (partition, versions)
    check_routing(config, [OLD, NEW], INPUTS)
    # and it survives the control topic's JSON form (a rerun compares it with the one in force)
    assert FlagConfig.from_description(config.describe()) == config


def test_the_guard_refuses_rules_that_split_a_partition_record_by_record() -> None:
    ramp = parse_rules(["version=2&percent=10:production", "version=1&percent=10:side"])
    with pytest.raises(FlagError, match="decide record by record"):
        check_routing(ramp, [OLD, NEW], INPUTS)
    check_routing(ramp, [OLD], INPUTS)  # one version: anything goes


def test_environment_rules_are_decided_per_version() -> None:
    staging = RunningVersion("2", shadow=True, environment="staging")
    config = parse_rules(["env=staging:production", "version=1:side"])
    assert served(config, [OLD, staging], INPUTS)[("clicks", 5)] == ["2"]


def test_partitions_and_serve_forms() -> None:
    assert parse_partitions("3,0,3", "--canary") == [0, 3]
    for bad in ("", "a", "1,,2", "-1"):
        with pytest.raises(ConfigError, match="--canary"):
            parse_partitions(bad, "--canary")
    assert serves({}) == [] and serves({"serve": "all"}) is None
    assert serves({"serve": [3, 0]}) == [0, 3]
    assert [describe_serve(s) for s in (None, [], [3, 0])] == ["all", "none", "0,3"]


def test_routing_steps_follow_running_and_end_retired() -> None:
    check_transition(Step.RUNNING, Step.ROUTING)
    check_transition(Step.ROUTING, Step.ROUTED)
    check_transition(Step.ROUTING, Step.ROUTING)  # a deployer that died, run again
    check_transition(Step.ROUTED, Step.ROUTING)
    check_transition(Step.ROUTED, Step.RETIRED)
    with pytest.raises(TransitionError, match="cannot be followed"):
        check_transition(Step.SUBMITTED, Step.ROUTED)


def test_upgrades_and_rollbacks_are_refused_while_a_canary_serves(tmp_path: Path) -> None:
    from fake_jobmanager import serve

    from flowship.deploy.ledger import LocalLedger
    from flowship.deploy.side_by_side import refuse_if_serving, shadow_key

    ledger, key = LocalLedger(tmp_path / "ledger"), shadow_key("clicks")
    refuse_if_serving(ledger, "clicks", "an upgrade")  # nothing beside it
    canary = "c" * 32
    with serve({canary: "RUNNING"}, broken="none") as url:
        ledger.acquire(key)
        dark = ledger.new_deployment_id()
        ledger.record(key, dark, Step.PLANNED, version="2", kind="canary")
        ledger.record(key, dark, Step.SUBMITTED, job_id=canary, rest_url=url)
        ledger.record(key, dark, Step.RUNNING, job_id=canary, rest_url=url)
        refuse_if_serving(ledger, "clicks", "an upgrade")  # serving nothing yet: a dark launch
        ledger.record(key, dark, Step.ROUTING, serve=[0, 3])
        with pytest.raises(ConfigError, match=r"an upgrade of 'clicks' refused: .* 0,3"):
            refuse_if_serving(ledger, "clicks", "an upgrade")
        ledger.record(key, dark, Step.ROUTED, serve=[], handing_back=[0, 3], change="x")
        with pytest.raises(ConfigError, match="flowship abort clicks"):  # not handed back yet
            refuse_if_serving(ledger, "clicks", "a rollback")
    # its Flink job is gone: nothing serves from it any more
    with serve({}, broken="none") as url:
        ledger.record(key, dark, Step.ROUTING, serve="all", rest_url=url)
        refuse_if_serving(ledger, "clicks", "an upgrade")


def test_a_change_moves_partitions_one_way_only() -> None:
    canary = serving_config("2", "1", [0, 3])
    check_routing(serving_config("2", "1", None), [OLD, NEW], INPUTS, canary)  # promote
    check_routing(FlagConfig(), [OLD, NEW], INPUTS, canary)  # abort
    swap = serving_config("2", "1", [1, 2])
    with pytest.raises(FlagError, match="one way per change"):
        check_routing(swap, [OLD, NEW], INPUTS, canary)


def test_a_promoted_versions_lane_is_kept_by_what_continues_from_it(tmp_path: Path) -> None:
    from flowship.deploy.ledger import LocalLedger
    from flowship.deploy.side_by_side import SHADOW_LANE, lane_of, other_lane, shadow_key

    ledger = LocalLedger(tmp_path / "ledger")
    assert lane_of(ledger, "clicks") == "" and other_lane("") == SHADOW_LANE
    assert other_lane(SHADOW_LANE) == ""
    ledger.acquire("clicks")
    first = ledger.new_deployment_id()
    for step in (Step.PLANNED, Step.SUBMITTED, Step.RUNNING, Step.STABLE):
        ledger.record("clicks", first, step, version="1")
    promoted = ledger.new_deployment_id()
    ledger.record("clicks", first, Step.RETIRED)  # STABLE -> RETIRED: a promotion replaced it
    ledger.record("clicks", promoted, Step.PLANNED, version="2", kind="promoted")
    ledger.record("clicks", promoted, Step.SUBMITTED, lane=SHADOW_LANE)
    ledger.record("clicks", promoted, Step.RUNNING, lane=SHADOW_LANE)
    assert lane_of(ledger, "clicks") == SHADOW_LANE
    refused = ledger.new_deployment_id()  # an upgrade refused by the gate started nothing
    ledger.record("clicks", refused, Step.PLANNED, version="3")
    ledger.record("clicks", refused, Step.REFUSED)
    assert lane_of(ledger, "clicks") == SHADOW_LANE
    assert ledger.current("clicks")[0] == promoted
    # under the shadow key, a promoted deployment is never current
    key = shadow_key("clicks")
    ledger.acquire(key)
    dark = ledger.new_deployment_id()
    for step in (Step.PLANNED, Step.SUBMITTED, Step.RUNNING, Step.ROUTING, Step.ROUTED):
        ledger.record(key, dark, step, version="2")
    assert ledger.current(key)[0] == dark
    ledger.record(key, dark, Step.PROMOTED, became=promoted)
    assert ledger.current(key) is None and Step.PROMOTED.terminal
