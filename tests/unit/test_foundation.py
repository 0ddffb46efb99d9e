"""JVM-free tests of the foundation: errors, codecs, headers, declarations, settings, jars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flowship as fs
from flowship import errors
from flowship._jars import find_jars
from flowship.deploy.exits import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNREACHABLE, exit_code_for
from flowship.job._settings import Settings, build_parser, settings_from_args
from flowship.kafka._headers import decode_headers, encode_headers
from flowship.schema import AvroCodec, parse_schema

ROOT = Path(__file__).resolve().parents[2]
CLICK = ROOT / "examples" / "click_sessions" / "click.avsc"
STATS = ROOT / "examples" / "click_sessions" / "session_stats.avsc"


def test_public_api_is_small() -> None:
    assert sorted(fs.__all__) == [
        "Flag", "FlowshipError", "Job", "KafkaSink", "KafkaSource", "ListState", "MapState",
        "Record", "StateSchema", "ValueState", "apply", "stateful",
    ]


def test_what_a_taskmanager_imports_leaves_pydantic_out() -> None:
    # a TaskManager's Python imports flowship with the job's code; pydantic(-settings) are for
    # the client (settings, models as schemas) and would only slow every task's start-up
    import subprocess
    import sys

    code = (
        "import sys, flowship, flowship.kafka._flink, flowship.state._runtime, flowship.schema\n"
        "assert flowship.job.Job and flowship.schema.StateSchema\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pydantic')))\n"
        "from flowship.job import Settings\n"
        "from flowship.schema import model_to_avro\n"
        "print(Settings.__name__, model_to_avro.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "Settings model_to_avro"]


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.SchemaError, ValueError),
        (errors.PayloadError, ValueError),
        (errors.MissingJarError, FileNotFoundError),
        (errors.ClusterError, ConnectionError),
        (errors.JobFailedError, RuntimeError),
        (errors.ServiceError, RuntimeError),
    ],
)
def test_error_tree(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, errors.FlowshipError)
    assert issubclass(cls, builtin)


def test_exit_codes() -> None:
    assert exit_code_for(errors.ConfigError("x")) == EXIT_BAD_INPUT
    assert exit_code_for(errors.ClusterError("x")) == EXIT_UNREACHABLE
    assert exit_code_for(errors.MissingJarError("x")) == EXIT_UNREACHABLE
    assert exit_code_for(errors.JobFailedError("x")) == EXIT_FAILED
    assert len({EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNREACHABLE, 0}) == 4


# --- Avro codec ----------------------------------------------------------------------------


CLICK_VALUE = {"event_id": "e1", "user_id": "u1", "page": "/", "ts": 1_700_000_000_000}


def test_codec_round_trip() -> None:
    codec = AvroCodec(CLICK)
    decoded = codec.decode(codec.encode(CLICK_VALUE))
    assert decoded["event_id"] == "e1"
    assert int(decoded["ts"].timestamp() * 1000) == CLICK_VALUE["ts"]


def test_codec_rejects_every_poison_kind() -> None:
    import events

    codec = AvroCodec(CLICK)
    valid = codec.encode(CLICK_VALUE)
    poison = events.poison_payloads(8, valid)
    assert len(set(poison)) >= 4
    for payload in poison:
        with pytest.raises(
            errors.PayloadError, match=r"does not decode as flowship\.examples\.Click"
        ):
            codec.decode(payload)


def test_codec_rejects_trailing_bytes_explicitly() -> None:
    codec = AvroCodec(CLICK)
    with pytest.raises(errors.PayloadError, match="3 trailing bytes"):
        codec.decode(codec.encode(CLICK_VALUE) + b"abc")


def test_codec_encode_error_names_schema() -> None:
    codec = AvroCodec(STATS)
    with pytest.raises(errors.PayloadError, match=r"does not encode as .*\.SessionStats"):
        codec.encode({"event_id": "e1"})


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "string"}, "expected an Avro record schema"),
        (
            {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]},
            "invalid Avro schema",
        ),
        (Path("/nonexistent/x.avsc"), "cannot read Avro schema file"),
    ],
)
def test_bad_schemas_raise_schema_error(schema: object, match: str) -> None:
    with pytest.raises(errors.SchemaError, match=match):
        parse_schema(schema, where="test")  # type: ignore[arg-type]


def test_schema_from_json_text_and_path_agree() -> None:
    assert (
        parse_schema(CLICK.read_text())
        == parse_schema(CLICK)
        == parse_schema(json.loads(CLICK.read_text()))
    )


# --- headers ---------------------------------------------------------------------------------


def test_headers_round_trip_and_nul_is_neutralised() -> None:
    headers = [("a", "1"), ("flowship.error", "bad\x00byte"), ("empty", "")]
    encoded = encode_headers(headers)
    assert encoded.count("\x00") == 5
    assert decode_headers(encoded) == [
        ("a", "1"),
        ("flowship.error", "bad\ufffdbyte"),
        ("empty", ""),
    ]
    assert decode_headers(encode_headers([])) == []


# --- declarations ----------------------------------------------------------------------------


def test_source_defaults() -> None:
    src = fs.KafkaSource(uid="clicks-source", topic="clicks", schema=CLICK)
    assert src.name == "clicks_source"
    assert src.dead_letter_topic == "clicks.dlq"
    assert src.describe()["schema"]["name"] == "flowship.examples.Click"


@pytest.mark.parametrize("uid", ["", "has space", "-leading", "x" * 129, "ünï"])
def test_bad_uids_are_refused(uid: str) -> None:
    with pytest.raises(errors.ConfigError, match="not a valid stable uid"):
        fs.KafkaSource(uid=uid, topic="t", schema=CLICK)


def test_sink_key_field_must_exist() -> None:
    with pytest.raises(errors.ConfigError, match="key field 'nope' is not in schema"):
        fs.KafkaSink(uid="s", topic="t", schema=STATS, key="nope")


def _job(**kw: object) -> fs.Job:
    src = fs.KafkaSource(uid="in", topic="in", schema=CLICK)
    sink = fs.KafkaSink(uid="out", topic="out", schema=STATS)
    args = {"sources": [src], "sinks": [sink], **kw}
    return fs.Job("demo", version="1", **args)  # type: ignore[arg-type]


def test_job_validation() -> None:
    with pytest.raises(errors.ConfigError, match="must be lowercase"):
        fs.Job("Bad Name", version="1", sources=[], sinks=[])
    with pytest.raises(errors.ConfigError, match="at least one KafkaSource"):
        fs.Job("ok", version="1", sources=[], sinks=[])
    src = fs.KafkaSource(uid="in", topic="in", schema=CLICK)
    clash = fs.KafkaSink(uid="in.dlq", topic="x", schema=STATS)
    with pytest.raises(errors.ConfigError, match=r"uid 'in\.dlq' is used by"):
        fs.Job("ok", version="1", sources=[src], sinks=[clash])


def test_topology_parameters_must_match_sources() -> None:
    job = _job()

    def build(wrong):  # type: ignore[no-untyped-def]
        return wrong

    with pytest.raises(errors.ConfigError, match=r"takes \['wrong'\], but the sources are named"):
        job.topology(build)


def test_sink_mapping_validation() -> None:
    job = _job()
    sink = job.sinks[0]
    assert job._sink_map("stream") == {sink: "stream"}
    assert job._sink_map({sink: "s"}) == {sink: "s"}
    with pytest.raises(errors.ConfigError, match="missing"):
        job._sink_map({})


# --- settings --------------------------------------------------------------------------------


def test_settings_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSHIP_BOUNDED", "0")
    monkeypatch.setenv("FLOWSHIP_PARALLELISM", "3")
    parser = build_parser("job.py", "d")
    s = settings_from_args(parser.parse_args([]))
    assert s.bounded is False  # no bool("0") bug
    assert s.parallelism == 3
    s = settings_from_args(parser.parse_args(["--parallelism", "5", "--bounded"]))
    assert (s.parallelism, s.bounded) == (5, True)


def test_settings_errors_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser("job.py", "d")
    with pytest.raises(errors.ConfigError, match="target"):
        settings_from_args(parser.parse_args(["--target", "ftp://x"]))
    monkeypatch.setenv("FLOWSHIP_PARALLELISM", "zero")
    with pytest.raises(errors.ConfigError, match="parallelism"):
        settings_from_args(parser.parse_args([]))


def test_help_lists_environment_variables() -> None:
    text = build_parser("job.py", "d").format_help()
    for name in Settings.model_fields:
        assert f"FLOWSHIP_{name.upper()}" in text


def test_missing_jars_error_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWSHIP_JARS_DIR", str(tmp_path))
    monkeypatch.setattr("flowship._jars._REPO_JVM", tmp_path / "nope")
    with pytest.raises(errors.MissingJarError, match="make jars"):
        find_jars()


def test_jars_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "connector").mkdir()
    (tmp_path / "connector" / "flink-sql-connector-kafka-5.0.0-2.2.jar").write_bytes(b"")
    (tmp_path / "flowship-provenance.jar").write_bytes(b"")
    monkeypatch.setenv("FLOWSHIP_JARS_DIR", str(tmp_path))
    jars = find_jars()
    assert jars.provenance == tmp_path / "flowship-provenance.jar"
    assert jars.pipeline_jars().count("file://") == 2


def test_kraft_cluster_ids_never_start_with_a_dash() -> None:
    from flowship.testing.kafka_broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(3000)]  # about 1 in 64 raw ids starts with '-'
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_test_modules_have_unique_basenames() -> None:
    # the test folders are not packages: pytest cannot collect two modules of the same name
    root = Path(__file__).resolve().parents[1]
    names = [p.name for p in root.rglob("test_*.py")]
    assert not {n for n in names if names.count(n) > 1}
