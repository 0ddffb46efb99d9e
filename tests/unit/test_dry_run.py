"""Pure logic of ``--dry-run``: naming, flags handed to the child, dump decoding, report."""

from __future__ import annotations

import base64

import pytest

from flowship.deploy.rehearse import (
    DryRunReport,
    Rehearsal,
    decode_dump,
    format_report,
    new_token,
    rehearsal_name,
    rehearsal_suffix,
    sample_consumed,
)
from flowship.errors import ConfigError
from flowship.job._dry_run import child_argv
from flowship.job._settings import build_parser
from flowship.schema import StateCodec, StateSchema

V1 = {"type": "record", "name": "S", "fields": [{"name": "n", "type": "long"}]}
V2 = {
    "type": "record",
    "name": "S",
    "fields": [{"name": "n", "type": "long"}, {"name": "tag", "type": "string", "default": ""}],
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def raw(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_rehearsal_names_get_the_suffix_and_production_names_do_not() -> None:
    token = new_token()
    suffix = rehearsal_suffix(token)
    assert suffix == f".dryrun-{token}"
    assert rehearsal_name("session-stats", suffix) == f"session-stats.dryrun-{token}"
    assert rehearsal_name("flowship.job.sink", "") == "flowship.job.sink"
    assert new_token() != token
    with pytest.raises(ConfigError):
        rehearsal_name("topic", "-oops")


def test_kafka_context_names_everything_with_the_suffix() -> None:
    from flowship.kafka._flink import KafkaContext

    prod = KafkaContext(bootstrap="b", job="j", version="1")
    dry = KafkaContext(bootstrap="b", job="j", version="1", rehearsal=".dryrun-x")
    assert prod.named("flowship.j.sink") == "flowship.j.sink"
    assert dry.named("flowship.j.sink") == "flowship.j.sink.dryrun-x"


def test_child_gets_the_parents_flags_but_not_the_dry_runs() -> None:
    argv = [
        "--kafka-bootstrap",
        "k:1",
        "--dry-run",
        "--json",
        "--upgrade-from",
        "savepoint",
        "--parallelism",
        "1",
        "--bounded",
        "--upgrade-from=x",
    ]
    assert child_argv(argv) == ["--kafka-bootstrap", "k:1", "--parallelism", "1"]


def test_parser_knows_the_dry_run_flags_and_hides_the_internal_one() -> None:
    parser = build_parser("job.py", "d")
    args = parser.parse_args(["--dry-run", "--json", "--dry-run-timeout-s", "30"])
    assert args.dry_run and args.json and args.dry_run_timeout_s == "30"
    assert "--flowship-rehearsal" not in parser.format_help()
    assert "FLOWSHIP_DRY_RUN_TIMEOUT_S" in parser.format_help()


def dump_and_codecs() -> tuple[list[str], dict, dict]:
    schema = StateSchema("s", versions={1: V1, 2: V2})
    codec = StateCodec(schema)
    old = StateCodec(StateSchema("s", versions={1: V1}))
    lines = [
        "K\top\tstring\n",
        f"V\top\tv\t{b64('u1')}\t\t{raw(old.encode({'n': 1}))}\n",
        f"V\top\tv\t{b64('u2')}\t\t{raw(codec.encode({'n': 2, 'tag': 't'}))}\n",
        f"V\top\tv\t{b64('u3')}\t\t{raw(b'garbage')}\n",
        f"V\top\tm\t{b64('u1')}\t{b64('k')}\t{raw(codec.encode({'n': 3, 'tag': ''}))}\n",
        "M\tnew-op\tjava.io.IOException: Savepoint does not contain state with operator uid\n",
    ]
    kinds = {"op": {"v": "value", "m": "map"}, "new-op": {"x": "list"}}
    codecs = {("op", "v"): codec, ("op", "m"): codec, ("new-op", "x"): codec}
    return lines, kinds, codecs


def test_decode_dump_counts_keys_versions_migrations_and_failures() -> None:
    lines, kinds, codecs = dump_and_codecs()
    ops = {op.uid: op for op in decode_dump(lines, kinds, codecs)}
    op = ops["op"]
    assert op.key_type == "string" and not op.ok
    states = {s.state: s for s in op.states}
    v = states["v"]
    assert (v.keys, v.values, v.migrated, v.failed) == (3, 3, 1, 1)
    assert sorted(v.writers) == sorted(
        [
            next(k for k in v.writers if k.startswith("v1 ")),
            next(k for k in v.writers if k.startswith("v2 ")),
            "not flowship state",
        ]
    )
    assert v.failures[0]["key"] == "u3"
    assert "operator uid 'op'" in v.failures[0]["error"]
    m = states["m"]
    assert (m.keys, m.values, m.migrated, m.failed) == (1, 1, 0, 0)
    assert ops["new-op"].missing and ops["new-op"].ok


def test_report_text_names_failures_and_the_verdict() -> None:
    lines, kinds, codecs = dump_and_codecs()
    report = DryRunReport(
        job="j",
        version="2",
        running_version="1",
        token="t",
        gate={"compatible": True, "errors": 0, "warnings": 0, "problems": []},
        state_from="file:/sp",
        state_source="savepoint",
        operators=decode_dump(lines, kinds, codecs),
        rehearsal=Rehearsal(
            ran=True,
            passed=True,
            records_in=5,
            outputs={"out.dryrun-t": 5},
            dead_letters={"in.dlq.dryrun-t": 0},
        ),
    )
    text = format_report(report)
    assert "gate: compatible" in text
    assert "value state 'v': 3 keys, 3 values, 1 migrated" in text
    assert "key 'u3'" in text and "1 FAILED" in text
    assert "output out.dryrun-t: 5 records" in text
    assert "dry run FAILED" in text
    assert report.failures()[0]["uid"] == "op"
    data = report.to_json()
    assert data["passed"] is False and data["state_ok"] is False


def test_the_sample_is_consumed_once_every_partition_committed_its_end() -> None:
    ends = {("clicks", 0): 10, ("clicks", 1): 0, ("clicks", 2): 5}
    assert not sample_consumed(ends, {("clicks", 0): 10, ("clicks", 2): 4}, settled=False)
    assert sample_consumed(ends, {("clicks", 0): 10, ("clicks", 2): 5}, settled=False)
    # a transactional input ends with a commit marker: one short counts once settled
    assert sample_consumed(ends, {("clicks", 0): 10, ("clicks", 2): 4}, settled=True)
    assert not sample_consumed(ends, {("clicks", 0): 8, ("clicks", 2): 5}, settled=True)
    assert not sample_consumed(ends, {}, settled=True)


def test_state_that_was_not_read_is_said_and_does_not_fail_the_dry_run() -> None:
    report = DryRunReport(
        job="j",
        version="2",
        running_version="1",
        token="t",
        gate={"compatible": True, "errors": 0, "warnings": 0, "problems": []},
        state_not_read="execution mode 'process': ...",
        rehearsal=Rehearsal(ran=True, passed=True),
    )
    assert "state NOT READ key by key: execution mode 'process'" in format_report(report)
    assert report.passed and report.to_json()["state_not_read"]
