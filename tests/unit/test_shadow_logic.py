"""Dark launches without a JVM: names, ledger key and steps, the diff's catch-up rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowship.deploy.diff import Output
from flowship.deploy.ledger import LocalLedger
from flowship.deploy.machine import Step, TransitionError, check_transition
from flowship.deploy.shadow import (
    clip_to_production,
    last_shadow,
    offsets_json,
    shadow_key,
    shadow_status,
    topic_offsets,
)


def test_a_shadow_writes_every_output_aside_with_groups_and_transactions_of_its_own() -> None:
    from flowship.control._flags import ROUTE_KEY
    from flowship.kafka._declare import KafkaSink, KafkaSource
    from flowship.kafka._flink import EncodeAvro, KafkaContext, group_id
    from flowship.kafka._record import Record, encode_decisions

    prod = KafkaContext(bootstrap="b", job="j", version="1", control_topic="j.control")
    dark = KafkaContext(bootstrap="b", job="j", version="2", shadow=True, lane=".shadow")
    assert prod.isolated("flowship.j.s") == "flowship.j.s"
    assert dark.side_topic("stats") == "stats.side.2"
    assert dark.side_topic("clicks.dlq") == "clicks.dlq.side.2"
    assert dark.isolated("flowship.j.sink") == "flowship.j.sink.shadow"
    record = {"type": "record", "name": "C", "fields": [{"name": "id", "type": "string"}]}
    source = KafkaSource("clicks", topic="clicks", schema=record)
    assert group_id(source, prod) == "flowship.j.clicks"
    assert group_id(source, dark) == "flowship.j.clicks.shadow"
    # where an output goes is its routing decision; a shadow sends aside what carries none
    sink = KafkaSink("stats", topic="stats", schema=record)

    def routed(ctx: KafkaContext, element: object) -> bool:
        encode = EncodeAvro(sink, ctx)
        encode.open(None)
        return b"flowship.route" in encode.map(element)

    def rec(route: str | None, offset: int = 7) -> Record:
        decided = None if route is None else encode_decisions({ROUTE_KEY: route})
        return Record({"id": "a"}, b"k", "clicks", 0, offset, 0, decided)

    assert routed(dark, {"id": "a"}) and routed(dark, rec(None)) and routed(dark, rec("side"))
    assert not routed(dark, rec("production")) and not routed(dark, rec("production", -1))
    assert not routed(prod, {"id": "a"}) and not routed(prod, rec(None))
    assert routed(prod, rec("side")) and not routed(prod, rec("production"))


def test_shadows_are_recorded_under_a_key_of_their_own_and_end_retired(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path / "ledger")
    job, key = "clicks", shadow_key("clicks")
    assert key == "clicks.shadow"
    ledger.acquire(job)
    main = ledger.new_deployment_id()
    for step in (Step.PLANNED, Step.SUBMITTED, Step.RUNNING):
        ledger.record(job, main, step, version="1")
    ledger.acquire(key)
    dark = ledger.new_deployment_id()
    ledger.record(key, dark, Step.PLANNED, version="2", kind="shadow", shadow_of=main)
    assert last_shadow(ledger, job) is None  # not RUNNING yet
    ledger.record(key, dark, Step.SUBMITTED, job_id="abc", rest_url="http://127.0.0.1:1")
    ledger.record(key, dark, Step.RUNNING, job_id="abc")
    assert ledger.current(job)[0] == main  # the shadow is never the job's current deployment
    assert ledger.current(key)[0] == dark
    ledger.record(key, dark, Step.RETIRED, savepoint="file:/x")
    assert ledger.current(key) is None  # retired: nothing runs
    found = last_shadow(ledger, job)
    assert found is not None and found[0] == dark and found[1]["step"] == "RETIRED"
    status = shadow_status(ledger, job)
    assert status is not None and (status["version"], status["step"]) == ("2", "RETIRED")
    assert shadow_status(ledger, "other") is None


@pytest.mark.parametrize(
    ("current", "new"),
    [(Step.PLANNED, Step.RETIRED), (Step.RETIRED, Step.RUNNING), (Step.FAILED, Step.RETIRED)],
)
def test_retired_follows_only_a_started_version_and_is_final(current: Step, new: Step) -> None:
    with pytest.raises(TransitionError):
        check_transition(current, new)
    check_transition(Step.RUNNING, Step.RETIRED)
    check_transition(Step.SUBMITTED, Step.RETIRED)
    # a stable version that a promoted one took over (flowship retire); STABLE still ends its
    # own deployment's sequence
    check_transition(Step.STABLE, Step.RETIRED)
    # a blue-green version judged healthy while dark is promoted
    check_transition(Step.STABLE, Step.ROUTING)
    assert Step.RETIRED.terminal and Step.STABLE.terminal


def test_offsets_round_trip_through_the_ledgers_json() -> None:
    recorded = offsets_json({("stats", 0): 5, ("stats", 3): 9, ("dlq", 0): 0})
    assert recorded == {"dlq": {"0": 0}, "stats": {"0": 5, "3": 9}}
    assert topic_offsets(recorded, "stats") == {0: 5, 3: 9}
    assert topic_offsets(recorded, "missing") == {}


def test_shadow_outputs_production_has_not_reached_are_held_back_not_compared() -> None:
    production = [Output(f"in/0/{o}", b"k", b"v") for o in range(10, 20)]
    production += [Output("in/1/5", b"k", b"v"), Output(None, b"k", b"t")]
    shadow = [Output(f"in/0/{o}", b"k", b"v") for o in range(12, 25)]  # ahead on partition 0
    shadow += [Output("in/1/5", b"k", b"v"), Output("in/2/1", b"k", b"v")]  # 2: not reached
    shadow += [Output(None, b"k", b"timer")]
    kept, held = clip_to_production(production, shadow)
    addresses = [o.address for o in kept]
    assert addresses == [f"in/0/{o}" for o in range(12, 20)] + ["in/1/5", None]
    assert held == 5 + 1  # in/0/20..24 and in/2/1


def test_a_difference_prints_on_one_line_as_the_fields_values() -> None:
    from flowship.deploy.shadow import _example

    row = {"event_id": "e1", "page": None}
    example = {
        "input": "clicks/0/7",
        "fields": ["page"],
        "production": [{"key": "u1", "value": row}],
        "candidate": [{"key": "u1", "value": {**row, "page": "/dark"}}],
    }
    assert _example(example) == "clicks/0/7 (key 'u1'): page: None -> '/dark'"
    two = {**example, "candidate": example["candidate"] * 2, "fields": ["(outputs)"]}
    assert _example(two).startswith("clicks/0/7: production [")


def test_the_chart_shows_each_fields_differing_share_over_the_input(tmp_path: Path) -> None:
    from flowship.deploy.diff import OutputDiff
    from flowship.deploy.report import BUCKETS, rate_series, write_html
    from flowship.deploy.shadow import ShadowDiff

    compared = [f"in/{o % 2}/{o}" for o in range(1000)]
    # "page" differs in every 10th input from offset 500 on: a step from 0 % to 10 %
    differences = [(f"in/{o % 2}/{o}", ("page",)) for o in range(500, 1000, 10)]
    series = rate_series(compared, differences)
    assert list(series) == ["page"]
    xs, ys = series["page"]
    assert len(xs) == BUCKETS and xs[0] == 0 and xs[1] == 20
    assert ys[: BUCKETS // 2] == [0.0] * (BUCKETS // 2)
    assert ys[BUCKETS // 2 :] == [10.0] * (BUCKETS // 2)
    assert rate_series([], differences) == {}

    diff = OutputDiff("stats", "stats.side.2", compared=1000, equal=950, different=50)
    diff.differences = differences
    result = ShadowDiff("job", "d1", "2", "1", sinks=[diff], compared={"stats.side.2": compared})
    html = write_html(result, tmp_path / "diff.html").read_text()
    assert "<html>" in html[:100] and "Plotly.newPlot" in html  # plotly's JS is inside
    assert "job: shadow version 2 against production version 1" in html
    ys_json = ",".join(["0.0"] * (BUCKETS // 2) + ["10.0"] * (BUCKETS // 2))
    assert '"name":"page (stats.side.2)","x":[0,20,40,' in html
    assert f'"y":[{ys_json}]' in html
    assert "differences" not in diff.to_json()


def _running_shadow(
    ledger: LocalLedger, rest_url: str, job_id: str, *, running: bool = True
) -> str:
    key = shadow_key("clicks")
    ledger.acquire(key)
    dark = ledger.new_deployment_id()
    ledger.record(key, dark, Step.PLANNED, version="2", kind="shadow")
    ledger.record(key, dark, Step.SUBMITTED, job_id=job_id, rest_url=rest_url)
    if running:
        ledger.record(key, dark, Step.RUNNING, job_id=job_id, rest_url=rest_url)
    ledger.release(ledger.held(key))  # its deployer is done (or died): abort takes the lease
    return dark


def test_abort_records_a_shadow_flink_no_longer_knows_as_retired(tmp_path: Path) -> None:
    from fake_jobmanager import serve

    from flowship.deploy.shadow import abort_shadow
    from flowship.errors import ConfigError

    ledger = LocalLedger(tmp_path / "ledger")
    with pytest.raises(ConfigError, match="no shadow of job 'clicks' runs"):
        abort_shadow(ledger, "clicks")
    with serve({}, broken="none") as url:
        dark = _running_shadow(ledger, url, "a" * 32)
        done = abort_shadow(ledger, "clicks")
    assert done["deployment"] == dark and "not known" in done["already_ended"]
    steps = [e.step for e in ledger.deployments(shadow_key("clicks"))[dark]]
    assert steps[-1] is Step.RETIRED and ledger.current(shadow_key("clicks")) is None
    with pytest.raises(ConfigError, match="nothing to abort"):
        abort_shadow(ledger, "clicks")


def test_abort_changes_nothing_when_it_cannot_tell_whether_the_shadow_runs(tmp_path: Path) -> None:
    from fake_jobmanager import serve

    from flowship.deploy.shadow import abort_shadow
    from flowship.errors import ClusterError

    ledger = LocalLedger(tmp_path / "ledger")
    with serve({}, broken="b" * 32) as url:
        dark = _running_shadow(ledger, url, "b" * 32)
        before = ledger.entries(shadow_key("clicks"))
        with pytest.raises(ClusterError, match="cannot tell whether the shadow"):
            abort_shadow(ledger, "clicks")
    assert ledger.entries(shadow_key("clicks")) == before
    assert ledger.current(shadow_key("clicks"))[0] == dark
    assert ledger.held(shadow_key("clicks")) is None  # the lease was given back


def test_abort_settles_a_shadow_whose_deployer_died_before_running(tmp_path: Path) -> None:
    from fake_jobmanager import serve

    from flowship.deploy.shadow import abort_shadow
    from flowship.errors import ConfigError

    ledger = LocalLedger(tmp_path / "ledger")
    with serve({}, broken="none") as url:
        dark = _running_shadow(ledger, url, "c" * 32, running=False)
        with pytest.raises(ConfigError, match="no shadow of job 'clicks' runs"):
            abort_shadow(ledger, "clicks")
    steps = [e.step for e in ledger.deployments(shadow_key("clicks"))[dark]]
    assert steps == [Step.PLANNED, Step.SUBMITTED, Step.FAILED]  # never submitted: closed


def test_a_shadow_without_a_control_plane_dead_letters_aside() -> None:
    import struct

    from pyflink.datastream import OutputTag

    from flowship.kafka._declare import KafkaSource
    from flowship.kafka._flink import PACKED, DecodeAvro, KafkaContext

    record = {"type": "record", "name": "C", "fields": [{"name": "id", "type": "string"}]}
    source = KafkaSource("clicks", topic="clicks", schema=record)
    # ProvenanceDeserializationSchema's layout: partition, offset, timestamp, key and value
    # lengths (-1: none), then the bytes; b"\xff" is no Avro string
    poison = struct.pack(">iqqii", 2, 41, 0, -1, 1) + b"\xff"

    def dead_letter(ctx: KafkaContext) -> bytes:
        decode = DecodeAvro(source, ctx, OutputTag("dlq", PACKED))
        decode.open(None)
        ((_, packed),) = list(decode.process_element(poison, None))
        return packed

    production = KafkaContext(bootstrap="b", job="j", version="1")
    shadow = KafkaContext(bootstrap="b", job="j", version="2", shadow=True, lane=".shadow")
    assert b"flowship.route" not in dead_letter(production)
    assert b"flowship.route" in dead_letter(shadow)
