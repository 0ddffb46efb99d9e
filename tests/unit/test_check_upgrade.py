"""check_upgrade: every problem kind, compatible evolutions, the readable and JSON reports."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowship.deploy.check import UpgradeReport, check_upgrade
from flowship.errors import ConfigError
from flowship.schema import StateSchema
from flowship.state import STATE_LAYOUT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_JOB = ROOT / "examples" / "click_sessions" / "job.py"


def rec(*fields: dict[str, Any], name: str = "Session") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t.state", "fields": list(fields)}


def f(name: str, type_: Any, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **kw}


V1 = rec(f("clicks", "long"), f("page", "string"))
V2 = rec(f("clicks", "long"), f("page", "string"), f("sessions", "long", default=0))
PAGE_ENUM = {"type": "enum", "name": "Page", "symbols": ["HOME", "CART", "OTHER"]}
V3 = rec(f("clicks", "long"), f("page", PAGE_ENUM), f("sessions", "long", default=0))
V1_ENUM = rec(f("clicks", "long"), f("page", PAGE_ENUM))

CLICK = rec(f("user", "string"), f("page", "string"), name="Click")
STATS = rec(f("user", "string"), f("total", "long"), name="Stats")


def to_enum(value: dict[str, Any]) -> dict[str, Any]:
    page = value["page"].upper()
    return {**value, "page": page if page in PAGE_ENUM["symbols"] else "OTHER"}


def state(
    versions: dict[int, Any],
    migrations: dict[int, Any] | None = None,
    kind: str = "value",
    name: str = "session",
) -> dict[str, Any]:
    """A manifest state entry, as ``StateSpec.describe()`` writes it."""
    return {
        "kind": kind,
        "layout": STATE_LAYOUT,
        **StateSchema(name, versions, migrations).describe(),
    }


def manifest(
    *,
    job: str = "shop",
    version: str = "1",
    states: dict[str, dict[str, Any]] | None = None,
    sources: list[dict[str, Any]] | None = None,
    sinks: list[dict[str, Any]] | None = None,
    mode: str = "thread",
    flink: str = "2.2.1",
    dropped: tuple[str, ...] = (),
    graph: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A manifest shaped like ``build_manifest``'s (see test_helper_matches_real_manifest).

    ``graph``: more operators of the stream graph than flowship's own (which are always there).
    """
    states = {"session-stats": {"session": state({1: V1})}} if states is None else states
    sources = [source()] if sources is None else sources
    sinks = [sink()] if sinks is None else sinks
    uids: list[str] = []
    for s in sources:
        uids += [s["uid"], f"{s['uid']}.decode", f"{s['uid']}.dlq"]
    for s in sinks:
        uids += [s["uid"], f"{s['uid']}.encode"]
    uids += list(states)
    return {
        "format": 1,
        "job": job,
        "version": version,
        "code_digest": "sha256:" + "0" * 64,
        "script": "/nowhere/job.py",
        "flink_version": flink,
        "execution_mode": mode,
        "state_layout": STATE_LAYOUT,
        "sources": sources,
        "sinks": sinks,
        "operator_uids": sorted(uids),
        "stateful": {
            uid: {"uid": uid, "class": "Op", "states": dict(sorted(st.items()))}
            for uid, st in sorted(states.items())
        },
        "dropped": sorted(dropped),
        "stateless": False,
        "flags": [],
        "control": False,
        "graph": {"operators": [*_declared_graph(sources, sinks, states), *(graph or [])]},
    }


def op(
    uid: str | None,
    kind: str = "keyed",
    *,
    name: str = "",
    key: str | None = "Row(String)",
    op_id: str | None = None,
    user_hash: str | None = None,
    max_parallelism: int = -1,
    parallelism: int = 2,
) -> dict[str, Any]:
    """One operator of a graph description (flowship.job._graph); its id a hash of its uid."""
    digest = hashlib.md5((uid or name).encode()).hexdigest()
    return {
        "id": op_id or digest,
        "user_hash": user_hash,
        "uid": uid,
        "name": name or str(uid),
        "kind": kind,
        "key": None if key is None else {"type": key, "fingerprint": f"sha256:{key}"},
        "parallelism": parallelism,
        "max_parallelism": max_parallelism,
    }


def _declared_graph(
    sources: list[dict[str, Any]], sinks: list[dict[str, Any]], states: dict[str, Any]
) -> list[dict[str, Any]]:
    ops = []
    for s in sources:
        ops += [op(s["uid"], "source", key=None), op(f"{s['uid']}.decode", "operator", key=None)]
        ops += [op(f"{s['uid']}.dlq", "sink", key=None)]
        ops += [op(f"Sink Committer: {s['uid']}.dlq", "committer", key=None)]
    for s in sinks:
        ops += [
            op(s["uid"], "sink", key=None),
            op(f"Sink Committer: {s['uid']}", "committer", key=None),
        ]
    return ops + [op(uid) for uid in states]


def source(
    uid: str = "clicks-source", topic: str = "clicks", schema: Any = CLICK
) -> dict[str, Any]:
    return {"uid": uid, "topic": topic, "schema": schema, "dead_letter_topic": f"{topic}.dlq"}


def sink(
    uid: str = "stats-sink", topic: str = "stats", schema: Any = STATS, key: str | None = None
) -> dict[str, Any]:
    return {"uid": uid, "topic": topic, "schema": schema, "key": key}


def kinds(report: UpgradeReport, severity: str | None = None) -> set[str]:
    return {p.kind for p in report.problems if severity is None or p.severity == severity}


def one(report: UpgradeReport, kind: str) -> Any:
    found = [p for p in report.problems if p.kind == kind]
    assert len(found) == 1, report
    return found[0]


# the manifest shape -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_manifest() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE_JOB), "--manifest"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_helper_matches_real_manifest(real_manifest: dict[str, Any]) -> None:
    mine = manifest()
    assert set(mine) == set(real_manifest)
    real_op = next(iter(real_manifest["stateful"].values()))
    real_state = next(iter(real_op["states"].values()))
    my_state = mine["stateful"]["session-stats"]["states"]["session"]
    assert set(my_state) == set(real_state)
    assert set(my_state["versions"][0]) == set(real_state["versions"][0])
    assert set(mine["sources"][0]) == set(real_manifest["sources"][0])
    assert set(mine["sinks"][0]) == set(real_manifest["sinks"][0])
    real_ops, my_ops = real_manifest["graph"]["operators"], mine["graph"]["operators"]
    assert {frozenset(o) for o in real_ops} == {frozenset(o) for o in my_ops}
    assert {o["kind"] for o in real_ops} == {o["kind"] for o in my_ops}
    keyed = next(o for o in real_ops if o["kind"] == "keyed")
    assert keyed["uid"] == "session-stats"
    assert keyed["key"]["type"] == "Row(String)"  # by_user keys by Types.STRING()


def test_real_manifest_against_itself_and_other_mode(real_manifest: dict[str, Any]) -> None:
    assert check_upgrade(real_manifest, real_manifest).compatible
    process = dict(real_manifest, execution_mode="process")
    report = check_upgrade(real_manifest, process)
    assert not report.compatible
    assert kinds(report) == {"execution_mode_changed"}


# job and bad input ------------------------------------------------------------------------


def test_identical_is_compatible_without_problems() -> None:
    report = check_upgrade(manifest(), manifest(version="2"))
    assert report.compatible
    assert report.problems == ()
    assert any("stored versions 1 readable by v1" in line for line in report.checked)


def test_job_mismatch() -> None:
    report = check_upgrade(manifest(), manifest(job="other"))
    assert not report.compatible
    assert one(report, "job_mismatch").severity == "error"


@pytest.mark.parametrize("fmt", [2, None, "1"])
def test_unknown_format_is_bad_input(fmt: Any) -> None:
    bad = dict(manifest(), format=fmt)
    with pytest.raises(ConfigError, match="format"):
        check_upgrade(manifest(), bad)
    with pytest.raises(ConfigError, match="old manifest"):
        check_upgrade(bad, manifest())


def test_not_a_manifest_is_bad_input() -> None:
    with pytest.raises(ConfigError, match="lacks"):
        check_upgrade({"format": 1, "job": "shop"}, manifest())
    with pytest.raises(ConfigError, match="not a JSON object"):
        check_upgrade(manifest(), [1, 2])  # type: ignore[arg-type]


# operators --------------------------------------------------------------------------------


def test_stateful_operator_removed() -> None:
    report = check_upgrade(manifest(), manifest(states={}))
    assert not report.compatible
    problem = one(report, "stateful_operator_removed")
    assert problem.where == "operator session-stats"
    assert "dropped" in problem.hint


def test_stateful_operator_dropped_is_a_warning() -> None:
    report = check_upgrade(manifest(), manifest(states={}, dropped=("session-stats",)))
    assert report.compatible
    assert kinds(report) == {"state_dropped"}
    assert "allowNonRestoredState" in one(report, "state_dropped").hint


def test_source_uid_renamed_is_an_error() -> None:
    report = check_upgrade(manifest(), manifest(sources=[source(uid="clicks-in")]))
    assert not report.compatible
    problem = one(report, "source_uid_changed")
    assert "Kafka offsets" in problem.message
    assert "'clicks-in'" in problem.message  # the likely rename is named
    assert "operator_added" in kinds(report, "warning")


def test_sink_removed_is_an_error_its_transactions_live_under_its_uid() -> None:
    report = check_upgrade(manifest(), manifest(sinks=[]))
    assert not report.compatible
    assert kinds(report) == {"sink_uid_changed"}
    problem = one(report, "sink_uid_changed")
    assert problem.where == "operator stats-sink"
    assert "dropped" in problem.hint and "stateless=True" in problem.hint


def test_sink_removed_is_a_warning_when_dropped_or_stateless() -> None:
    dropped = check_upgrade(manifest(), manifest(sinks=[], dropped=["stats-sink"]))
    assert dropped.compatible
    assert kinds(dropped) == {"state_dropped"}
    stateless = check_upgrade(manifest(states={}), dict(manifest(sinks=[], states={}),
                                                        stateless=True))
    assert stateless.compatible
    assert kinds(stateless) == {"operator_removed"}
    assert "stats-sink.encode" in one(stateless, "operator_removed").message


def test_operator_added_is_a_warning() -> None:
    states = {"session-stats": {"session": state({1: V1})}, "fraud": {"score": state({1: V1})}}
    report = check_upgrade(manifest(), manifest(states=states))
    assert report.compatible
    assert one(report, "operator_added").where == "operator fraud"


# states -----------------------------------------------------------------------------------


def test_state_removed() -> None:
    old = manifest(states={"session-stats": {"session": state({1: V1}), "seen": state({1: V1})}})
    report = check_upgrade(old, manifest())
    assert not report.compatible
    assert one(report, "state_removed").where == "operator session-stats / state seen"


def test_state_kind_changed() -> None:
    new = manifest(states={"session-stats": {"session": state({1: V1}, kind="map")}})
    report = check_upgrade(manifest(), new)
    assert not report.compatible
    assert kinds(report) == {"state_kind_changed"}


def test_state_added_is_a_warning() -> None:
    new = manifest(states={"session-stats": {"session": state({1: V1}), "seen": state({1: V1})}})
    report = check_upgrade(manifest(), new)
    assert report.compatible
    assert kinds(report) == {"state_added"}


# state versions ---------------------------------------------------------------------------


def test_additive_version_is_compatible() -> None:
    new = manifest(version="2", states={"session-stats": {"session": state({1: V1, 2: V2})}})
    report = check_upgrade(manifest(), new)
    assert report.compatible, report
    assert report.problems == ()
    assert (
        "operator session-stats / state session: stored versions 1 readable by v2 "
        "(1 -> 2 by Avro resolution)"
    ) in report.checked


def test_type_change_with_migration_is_compatible() -> None:
    old = manifest(states={"session-stats": {"session": state({1: V1, 2: V2})}})
    new_state = state({1: V1, 2: V2, 3: V3}, migrations={3: to_enum})
    report = check_upgrade(old, manifest(states={"session-stats": {"session": new_state}}))
    assert report.compatible, report
    assert (
        "stored versions 1,2 readable by v3 (1 -> 2 by Avro resolution, 2 -> 3 by migrate function)"
    ) in str(report)


def test_type_change_in_place_is_refused_with_the_field() -> None:
    # history rewritten: version 1 now declares page as an enum
    new = manifest(states={"session-stats": {"session": state({1: V1_ENUM})}})
    report = check_upgrade(manifest(), new)
    assert not report.compatible
    problem = one(report, "unknown_writer_version")
    assert problem.where.startswith("operator session-stats / state session / version 1 ")
    assert "StateSchema(versions=...)" in problem.hint
    mismatch = one(report, "type_mismatch")  # why: explained by the schema checker
    assert "/fields/1" in mismatch.where
    assert "page" in mismatch.message
    assert "page" in str(report)


def test_compatible_schema_under_unknown_fingerprint_is_still_refused() -> None:
    # v1 replaced by a compatible schema: Avro could read it, the codec cannot find it
    new = manifest(states={"session-stats": {"session": state({1: V2})}})
    report = check_upgrade(manifest(), new)
    assert kinds(report, "error") == {"unknown_writer_version"}
    assert "fingerprint" in one(report, "unknown_writer_version").message


def test_version_rewritten_same_fingerprint() -> None:
    old = manifest(states={"session-stats": {"session": state({1: V2})}})
    changed = rec(f("clicks", "long"), f("page", "string"), f("sessions", "long", default=7))
    report = check_upgrade(
        old, manifest(states={"session-stats": {"session": state({1: changed})}})
    )
    assert not report.compatible
    assert kinds(report) == {"version_rewritten"}


def test_doc_only_edit_is_not_a_rewrite() -> None:
    documented = dict(V1, doc="Per-user session state.")
    new = manifest(states={"session-stats": {"session": state({1: documented})}})
    assert check_upgrade(manifest(), new).compatible


def test_version_renumbered_is_a_warning() -> None:
    wider = rec(f("clicks", "long"), f("page", "string"), f("extra", "int"))
    new = manifest(states={"session-stats": {"session": state({1: wider, 2: V1})}})
    report = check_upgrade(manifest(), new)
    assert report.compatible, report
    assert kinds(report) == {"version_renumbered"}


def test_missing_migration_in_the_manifest() -> None:
    new = manifest(
        states={"session-stats": {"session": state({1: V1, 2: V1_ENUM}, migrations={2: to_enum})}}
    )
    assert check_upgrade(manifest(), new).compatible
    broken = copy.deepcopy(new)
    broken["stateful"]["session-stats"]["states"]["session"]["versions"][1]["migration"] = False
    report = check_upgrade(manifest(), broken)
    assert not report.compatible
    problem = one(report, "missing_migration")
    assert problem.where == "operator session-stats / state session / version 2"
    assert "migrations={2: fn}" in problem.hint


# runtime ----------------------------------------------------------------------------------


def test_execution_mode_changed() -> None:
    report = check_upgrade(manifest(mode="process"), manifest(mode="thread"))
    assert not report.compatible
    assert "EMPTY" in one(report, "execution_mode_changed").message


def test_state_layout_changed() -> None:
    new = manifest()
    new["state_layout"] = "flowship-avro-latin1-string/2"
    report = check_upgrade(manifest(), new)
    assert not report.compatible
    assert kinds(report) == {"state_layout_changed"}


def test_flink_minor_change_warns_patch_does_not() -> None:
    assert check_upgrade(manifest(), manifest(flink="2.2.2")).problems == ()
    report = check_upgrade(manifest(), manifest(flink="2.3.0"))
    assert report.compatible
    assert kinds(report) == {"flink_version_changed"}


# sources and sinks ------------------------------------------------------------------------


def test_source_topic_changed_is_a_warning() -> None:
    report = check_upgrade(manifest(), manifest(sources=[source(topic="clicks-v2")]))
    assert report.compatible
    assert kinds(report) == {"source_topic_changed"}


def test_source_schema_changed_is_a_warning_with_problems() -> None:
    narrowed = rec(f("user", "string"), f("page", PAGE_ENUM), name="Click")
    report = check_upgrade(manifest(), manifest(sources=[source(schema=narrowed)]))
    assert report.compatible
    assert kinds(report) == {"source_schema_changed"}
    assert all(p.severity == "warning" for p in report.problems)
    assert any("type_mismatch" in p.message and "/fields/1" in p.where for p in report.problems)


def test_sink_schema_incompatible() -> None:
    dropped_field = rec(f("user", "string"), name="Stats")
    report = check_upgrade(manifest(), manifest(sinks=[sink(schema=dropped_field)]))
    assert not report.compatible
    problem = one(report, "sink_schema_incompatible")
    assert "new topic" in problem.hint
    assert "missing_default" in problem.message


def test_sink_schema_added_field_is_compatible() -> None:
    wider = rec(f("user", "string"), f("total", "long"), f("avg", "double"), name="Stats")
    report = check_upgrade(manifest(), manifest(sinks=[sink(schema=wider)]))
    assert report.compatible
    assert report.problems == ()
    assert "sink stats-sink: new schema readable by consumers of the old schema" in report.checked


def test_sink_topic_changed_is_a_warning() -> None:
    report = check_upgrade(manifest(), manifest(sinks=[sink(topic="stats-2")]))
    assert report.compatible
    assert kinds(report) == {"sink_topic_changed"}


# the report -------------------------------------------------------------------------------


def test_report_text_and_json() -> None:
    new = manifest(
        version="2",
        mode="process",
        states={"session-stats": {"session": state({1: V1, 2: V2})}},
    )
    report = check_upgrade(manifest(), new)
    text = str(report)
    assert text.startswith("upgrade shop 1 -> 2: INCOMPATIBLE (1 errors, 0 warnings)")
    assert "compatible:" in text and "1 -> 2 by Avro resolution" in text
    assert "[execution_mode_changed] execution_mode" in text
    assert "fix: keep execution_mode='thread'" in text
    data = json.loads(json.dumps(report.to_json()))
    assert data["compatible"] is False
    assert data["errors"] == 1
    assert [p["kind"] for p in data["problems"]] == ["execution_mode_changed"]
    assert report.errors == report.problems and report.warnings == ()


def _with_flags(flags: list[Any]) -> dict[str, Any]:
    from flowship.control import Flag

    out = manifest()
    out["flags"] = [f.describe() if isinstance(f, Flag) else f for f in flags]
    out["control"] = bool(flags)
    return out


def test_flags_removed_or_default_changed_are_reported() -> None:
    from flowship.control import Flag

    old = _with_flags([Flag("a"), Flag("b", default=False)])
    new = _with_flags([Flag("b", default=True)])
    report = check_upgrade(old, new)
    assert report.compatible
    kinds = {(p.kind, p.where) for p in report.warnings}
    assert kinds == {("flag_removed", "flag 'a'"), ("flag_default_changed", "flag 'b'")}
    # a rule in force for the removed flag is named in the warning
    targeted = check_upgrade(old, new, rules={"a": {"rules": [{"match": "all",
                                                               "variant": "on"}]}})
    assert "rules in force" in next(p.message for p in targeted.warnings
                                    if p.kind == "flag_removed")


def test_a_rule_serving_a_variant_the_new_version_lacks_blocks_the_upgrade() -> None:
    from flowship.control import Flag

    old = _with_flags([Flag("tier", variants={"basic": 1, "gold": 2}, default="basic")])
    new = _with_flags([Flag("tier", variants={"basic": 1}, default="basic")])
    rules = {"tier": {"rules": [{"match": "percent", "values": [30], "variant": "gold"}]}}
    report = check_upgrade(old, new, rules=rules)
    assert not report.compatible
    assert [p.kind for p in report.errors] == ["flag_variant_removed"]
    assert check_upgrade(old, old, rules=rules).compatible


# the stream graph (operators flowship does not declare, key types, max parallelism) -------------


def test_undeclared_stateful_operator_removed_from_the_graph_is_an_error() -> None:
    old = manifest(graph=[op("seen-users")])
    problem = one(check_upgrade(old, manifest()), "graph_operator_removed")
    assert problem.severity == "error"
    assert problem.where == "operator seen-users"
    assert "flowship does not declare it" in problem.message
    assert "dropped=['seen-users']" in problem.hint
    # listed in dropped: let go on purpose, not reported again
    assert check_upgrade(old, manifest(dropped=("seen-users",))).compatible
    # a stateless operator may go
    assert check_upgrade(manifest(graph=[op("fmt", "operator", key=None)]), manifest()).compatible


def test_declared_operators_are_reported_once_not_again_from_the_graph() -> None:
    old = manifest(sinks=[sink(), sink("audit-sink", "audit")])
    report = check_upgrade(old, manifest())
    assert kinds(report, "error") == {"sink_uid_changed"}  # not also its writer and committer
    report = check_upgrade(manifest(), manifest(states={}))
    assert kinds(report, "error") == {"stateful_operator_removed"}


def test_a_stateless_job_only_keeps_its_sources() -> None:
    old = manifest(graph=[op("seen-users"), op("audit", "sink", key=None)])
    new = dict(manifest(states={}), stateless=True)
    report = check_upgrade(dict(old, stateless=True), new)
    assert "graph_operator_removed" not in kinds(report)
    old = manifest(graph=[op("raw-source", "source", key=None)])
    assert one(check_upgrade(old, new), "graph_operator_removed").where == "operator raw-source"


def test_an_operator_without_uid_is_matched_by_its_id_or_pinned_hash() -> None:
    old = manifest(graph=[op(None, name="counts", op_id="a" * 32)])
    moved = manifest(graph=[op(None, name="counts", op_id="b" * 32)])
    problem = one(check_upgrade(old, moved), "operator_id_changed")
    assert problem.severity == "error"
    assert f".set_uid_hash('{'a' * 32}')" in problem.hint
    pinned = manifest(graph=[op("counts", user_hash="a" * 32)])
    assert check_upgrade(old, pinned).compatible
    same = check_upgrade(old, old)
    assert same.compatible
    assert one(same, "operator_without_uid").severity == "warning"


def test_key_type_changes_are_errors() -> None:
    old = manifest(graph=[op("seen-users", key="Row(String)")])
    report = check_upgrade(old, manifest(graph=[op("seen-users", key="Row(Long)")]))
    problem = one(report, "key_type_changed")
    assert problem.severity == "error"
    assert "is keyed by Row(Long)" in problem.message
    assert "keys it by Row(String)" in problem.message
    # flowship's own stateful operators are held to it too
    new = manifest()
    new["graph"]["operators"][-1]["key"] = {"type": "Row(Long)", "fingerprint": "sha256:x"}
    assert one(check_upgrade(manifest(), new), "key_type_changed").where == "operator session-stats"
    unkeyed = manifest(graph=[op("seen-users", "operator", key=None)])
    assert "is no longer keyed" in one(check_upgrade(old, unkeyed), "key_type_changed").message


@pytest.mark.parametrize(
    ("old_max", "new_max", "severity"),
    [(256, 512, "error"), (-1, 256, "warning"), (256, -1, None), (128, 128, None), (-1, -1, None)],
)
def test_max_parallelism_changes(old_max: int, new_max: int, severity: str | None) -> None:
    old = manifest(graph=[op("seen-users", max_parallelism=old_max)])
    new = manifest(graph=[op("seen-users", max_parallelism=new_max)])
    report = check_upgrade(old, new)
    if severity is None:
        assert "max_parallelism_changed" not in kinds(report)
        return
    problem = one(report, "max_parallelism_changed")
    assert problem.severity == severity
    if severity == "warning":
        assert "derived from parallelism 2: 128" in problem.message


def test_the_running_jobs_max_parallelism_makes_the_warning_certain() -> None:
    from flowship.deploy.check import with_running_max_parallelism

    seen = op("seen-users", max_parallelism=-1)
    old = manifest(graph=[seen])
    new = manifest(graph=[op("seen-users", max_parallelism=256)])
    assert one(check_upgrade(old, new), "max_parallelism_changed").severity == "warning"
    # the running job (GET /jobs/:id) says what Flink gave the vertex this operator heads
    vertices = [{"id": seen["id"], "maxParallelism": 128}, {"id": "other", "maxParallelism": 9}]
    running = with_running_max_parallelism(old, vertices)
    problem = one(check_upgrade(running, new), "max_parallelism_changed")
    assert problem.severity == "error"
    assert "sets max parallelism 256; the running version's is 128" in problem.message
    # the same value: nothing to say; a value set in the graph is never overridden
    agreeing = with_running_max_parallelism(old, [{"id": seen["id"], "maxParallelism": 256}])
    assert "max_parallelism_changed" not in kinds(check_upgrade(agreeing, new))
    pinned = manifest(graph=[op("seen-users", max_parallelism=512)])
    kept = with_running_max_parallelism(pinned, vertices)
    assert [o["max_parallelism"] for o in kept["graph"]["operators"] if o["uid"] == "seen-users"] \
        == [512]
    # no graph recorded, or no usable vertices: the manifest as it was
    assert with_running_max_parallelism({"format": 1}, vertices) == {"format": 1}
    assert with_running_max_parallelism(old, [{"id": seen["id"]}]) == old
    assert old["graph"]["operators"][-1]["max_parallelism"] == -1  # not changed in place


@pytest.mark.parametrize(
    ("parallelism", "expected"), [(1, 128), (2, 128), (100, 256), (1000, 2048), (30000, 32768)]
)
def test_default_max_parallelism_is_flinks(parallelism: int, expected: int) -> None:
    from flowship.deploy.check import _default_max_parallelism

    assert _default_max_parallelism(parallelism) == expected


def test_a_manifest_without_graph_is_judged_by_its_declarations() -> None:
    old = manifest(graph=[op("seen-users")])
    del old["graph"]
    report = check_upgrade(old, manifest())
    assert report.compatible
    assert any("stream graphs not compared: the running version's" in c for c in report.checked)


def test_sink_key_change_is_a_warning() -> None:
    old = manifest(sinks=[sink(key="field:user_id")])
    new = manifest(sinks=[sink(key="field:session_id")])
    problem = one(check_upgrade(old, new), "sink_key_changed")
    assert problem.severity == "warning"
    assert "field:session_id instead of field:user_id" in problem.message
    assert check_upgrade(old, old).compatible
    recorded_before_keys = manifest(sinks=[{k: v for k, v in sink().items() if k != "key"}])
    assert "sink_key_changed" not in kinds(check_upgrade(recorded_before_keys, new))
