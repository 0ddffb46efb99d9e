"""The upgrade gate: can a job's new version take over the running version's savepoint.

:func:`check_upgrade` compares two manifests (``Job.manifest()``, see
:mod:`flowship.job._manifest`): ``old`` describes the running version, ``new`` the candidate.
Pure Python: no PyFlink, no JVM. The answer is an :class:`UpgradeReport` whose problems carry a
stable ``kind``, a severity, where (operator / state / version, or a JSON pointer into a schema),
what happened and how to fix it.

Problem kinds (stable; ``E`` = error, makes ``compatible`` False, ``W`` = warning):

============================  ==  ===============================================================
``job_mismatch``              E   the manifests are of different jobs
``stateful_operator_removed`` E   a stateful uid of old is gone (or holds no state) in new
``state_dropped``             W   ... but new lists it in ``dropped``: its state is discarded
``source_uid_changed``        E   a source uid is gone: its Kafka offsets live under that uid
``sink_uid_changed``          E   a sink uid is gone: its transaction state lives under that uid
                                  (a warning, operator_removed, for a ``stateless=True`` job)
``operator_removed``          W   another uid is gone (no flowship state, not a source or sink)
``operator_added``            W   a uid new in new (starts with empty state)
``state_removed``             E   a state of a kept operator is no longer declared
``state_kind_changed``        E   value / map / list changed
``state_added``               W   a new state of a kept operator (starts empty)
``unknown_writer_version``    E   a version old declares (so values of it may be stored) has a
                                  fingerprint no version of new has; the schema problems that
                                  explain why follow with their own kinds (``type_mismatch``, ...)
``version_rewritten``         E   same fingerprint, but new declares that version differently
                                  (defaults, logical types, ...: the values would read otherwise)
``version_renumbered``        W   a stored fingerprint is declared under another version number
``missing_migration``         E   a step of new that Avro cannot resolve has no migrate function
``execution_mode_changed``    E   thread <-> process
``state_layout_changed``      E   flowship's state layout differs
``flink_version_changed``     W   Flink major.minor differs
``source_topic_changed``      W   a source reads another topic
``source_schema_changed``     W   a source's reader schema changed (with the schema problems)
``sink_topic_changed``        W   a sink writes another topic
``sink_schema_incompatible``  E   consumers reading with the old sink schema cannot read the new
``sink_schema_changed``       W   the sink schema changed compatibly, with a warning
``sink_key_changed``          W   a sink makes its Kafka key otherwise (a field, a function)
``graph_operator_removed``    E   an operator of old's stream graph that holds state (a keyed
                                  operator, a source, a sink) and that flowship does not declare
                                  (a PyFlink operator written directly) is gone in new
``operator_id_changed``       E   the same, for an operator without a uid: its id is a hash of
                                  the graph's shape, and the new graph has none equal
``key_type_changed``          E   a kept keyed operator is keyed by another type (or no longer
                                  keyed): its keyed state cannot be restored
``max_parallelism_changed``   E   a kept keyed operator's max parallelism changes (the running
                                  job's own value where its graph left it to Flink,
                                  :func:`with_running_max_parallelism`; W when that is unknown)
``operator_without_uid``      W   a stateful operator of new has no uid
============================  ==  ===============================================================

The ``graph_*``, ``operator_*``, ``key_*`` and ``max_*`` kinds compare the stream graphs Flink
runs (``manifest["graph"]``, :mod:`flowship.job._graph`); when either manifest has none (one
recorded by an older flowship), the gate says so under ``checked`` and judges the declarations.

A manifest that is not one (unknown ``format``, missing keys) raises
:class:`~flowship.errors.ConfigError`: that is bad input, not an incompatibility.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowship.errors import ConfigError, SchemaError
from flowship.schema import CompatibilityReport, check_compatibility

__all__ = ["UpgradeProblem", "UpgradeReport", "check_upgrade"]

Severity = Literal["error", "warning"]

#: Manifest formats this gate understands.
FORMATS = (1,)

_REQUIRED = ("job", "operator_uids", "stateful", "sources", "sinks")
_NON_RESTORED = (
    "Flink refuses to restore a savepoint whose state has no operator unless the job is "
    "started with allowNonRestoredState"
)


@dataclass(frozen=True)
class UpgradeProblem:
    """One reason (``error``) or caveat (``warning``) for upgrading old -> new."""

    kind: str
    severity: Severity
    where: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.severity} {self.kind} at {self.where}: {self.message} ({self.hint})"

    def to_json(self) -> dict[str, str]:
        """A JSON-serializable dict of the fields."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "where": self.where,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class UpgradeReport:
    """The outcome of :func:`check_upgrade`: ``compatible`` is False iff there is an error.

    ``checked`` lists, readably, what *is* compatible (e.g. which stored state versions the new
    version reads and how).
    """

    compatible: bool
    problems: tuple[UpgradeProblem, ...] = ()
    checked: tuple[str, ...] = ()
    job: str = ""
    old_version: str = ""
    new_version: str = ""

    @property
    def errors(self) -> tuple[UpgradeProblem, ...]:
        """Problems that block the upgrade."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[UpgradeProblem, ...]:
        """Problems that allow the upgrade but deserve a look."""
        return tuple(p for p in self.problems if p.severity == "warning")

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict: verdict, versions, problems and what was found compatible."""
        return {
            "compatible": self.compatible,
            "job": self.job,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [p.to_json() for p in self.problems],
            "checked": list(self.checked),
        }

    def __str__(self) -> str:
        verdict = "compatible" if self.compatible else "INCOMPATIBLE"
        lines = [
            f"upgrade {self.job} {self.old_version} -> {self.new_version}: {verdict} "
            f"({len(self.errors)} errors, {len(self.warnings)} warnings)"
        ]
        if self.checked:
            lines.append("compatible:")
            lines += [f"  ok  {line}" for line in self.checked]
        for title, items in (("errors:", self.errors), ("warnings:", self.warnings)):
            if items:
                lines.append(title)
                for p in items:
                    lines.append(f"  - [{p.kind}] {p.where}")
                    lines.append(f"      {p.message}")
                    lines.append(f"      fix: {p.hint}")
        return "\n".join(lines)


def check_upgrade(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    rules: Mapping[str, Mapping[str, Any]] | None = None,
) -> UpgradeReport:
    """Check that ``new`` (candidate manifest) can take over from ``old`` (the running one).

    ``rules``: the flag rules in force on the job's control topic (flag key -> the rules'
    JSON form, :meth:`flowship.control.FlagConfig.describe`), when known: a rule that names a
    flag or variant the new version no longer declares is reported.

    Raises :class:`~flowship.errors.ConfigError` when either is not a manifest flowship knows.
    """
    _check_manifest(old, "old")
    _check_manifest(new, "new")
    run = _Check(old, new, rules=dict(rules or {}))
    run.all()
    return UpgradeReport(
        compatible=not any(p.severity == "error" for p in run.problems),
        problems=tuple(run.problems),
        checked=tuple(run.checked),
        job=str(new.get("job", "")),
        old_version=str(old.get("version", "?")),
        new_version=str(new.get("version", "?")),
    )


def _check_manifest(manifest: Any, side: str) -> None:
    if not isinstance(manifest, Mapping):
        msg = f"the {side} manifest is a {type(manifest).__name__}, not a JSON object"
        raise ConfigError(msg)
    fmt = manifest.get("format")
    if fmt not in FORMATS:
        msg = (
            f"the {side} manifest has format {fmt!r}; this flowship reads manifest format(s) "
            f"{list(FORMATS)} -- produce it with `python JOB.py --manifest` from a matching "
            "flowship, or upgrade flowship"
        )
        raise ConfigError(msg)
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        msg = f"the {side} manifest lacks {missing}; is it a flowship job manifest?"
        raise ConfigError(msg)


def _strip_docs(schema: Any) -> Any:
    """Schema JSON without ``doc`` attributes (they do not change how values read)."""
    if isinstance(schema, list):
        return [_strip_docs(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _strip_docs(v) for k, v in schema.items() if k != "doc"}
    return schema


def _same_schema(a: Any, b: Any) -> bool:
    return json.dumps(_strip_docs(a), sort_keys=True) == json.dumps(_strip_docs(b), sort_keys=True)


def _major_minor(version: Any) -> str:
    return ".".join(str(version).split(".")[:2])


def _numbers(numbers: Iterable[int]) -> str:
    return ",".join(str(n) for n in numbers)


@dataclass
class _Check:
    """One run of the checks, accumulating problems and compatible findings."""

    old: Mapping[str, Any]
    new: Mapping[str, Any]
    rules: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    problems: list[UpgradeProblem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def add(self, kind: str, severity: Severity, where: str, message: str, hint: str) -> None:
        self.problems.append(UpgradeProblem(kind, severity, where, message, hint))

    def all(self) -> None:
        self.job()
        self.runtime()
        self.operators()
        for uid in sorted(set(self.old["stateful"]) & set(self.new["stateful"])):
            self.operator_states(uid, self.old["stateful"][uid], self.new["stateful"][uid])
        self.sources()
        self.sinks()
        self.flags()
        self.graph()

    # feature flags ---------------------------------------------------------------------------

    def flags(self) -> None:
        old = {f["key"]: f for f in self.old.get("flags", [])}
        new = {f["key"]: f for f in self.new.get("flags", [])}
        for key in sorted(set(old) - set(new)):
            targeted = key in self.rules and self.rules[key].get("rules")
            self.add(
                "flag_removed",
                "warning",
                f"flag {key!r}",
                f"the new version no longer declares flag {key!r}"
                + ("; rules in force on the control topic target it" if targeted else ""),
                f"clear its rules (`flowship flag set {self.new['job']} {key} none`) once no "
                "version reads it; until then the running version keeps following them",
            )
        for key in sorted(set(old) & set(new)):
            if old[key].get("default") != new[key].get("default"):
                self.add(
                    "flag_default_changed",
                    "warning",
                    f"flag {key!r}",
                    f"default variant {old[key].get('default')!r} -> "
                    f"{new[key].get('default')!r}: records no rule matches change branch at the "
                    "upgrade",
                    "keep the default and change behaviour with a rule at a cut "
                    f"(`flowship flag set {self.new['job']} {key} all:VARIANT`)",
                )
        for key, config in sorted(self.rules.items()):
            if key not in new:
                continue
            variants = set(new[key].get("variants", {}))
            named = {r.get("variant") for r in config.get("rules", [])} | {config.get("default")}
            missing = sorted(str(v) for v in named - {None} - variants)
            if missing:
                self.add(
                    "flag_variant_removed",
                    "error",
                    f"flag {key!r}",
                    f"rules in force serve variant(s) {missing} that the new version does not "
                    f"declare (it has {sorted(variants)})",
                    "declare the variants again, or change the rules first "
                    f"(`flowship flag set {self.new['job']} {key} ...`)",
                )
            else:
                self.checked.append(f"flag {key!r}: the rules in force name declared variants")

    # job and runtime ---------------------------------------------------------------------

    def job(self) -> None:
        old_name, new_name = self.old["job"], self.new["job"]
        if old_name != new_name:
            self.add(
                "job_mismatch",
                "error",
                "job",
                f"the running job is {old_name!r}, the candidate is {new_name!r}",
                "compare two versions of the same job; a new job name is a new job "
                "(deploy it separately, it starts from empty state)",
            )

    def runtime(self) -> None:
        old_mode, new_mode = self.old.get("execution_mode"), self.new.get("execution_mode")
        if old_mode != new_mode:
            self.add(
                "execution_mode_changed",
                "error",
                "execution_mode",
                f"the execution mode changes from {old_mode!r} to {new_mode!r}: a job stopped "
                "with a savepoint in process mode and restored in thread mode was measured to "
                "start silently with EMPTY PyFlink state; flowship refuses until that is proven "
                "safe for its state layout",
                f"keep execution_mode={old_mode!r} (FLOWSHIP_EXECUTION_MODE), or migrate by "
                "replaying the input into a new job",
            )
        else:
            self.checked.append(f"execution mode {new_mode} unchanged")
        old_layout, new_layout = self.old.get("state_layout"), self.new.get("state_layout")
        if old_layout != new_layout:
            self.add(
                "state_layout_changed",
                "error",
                "state_layout",
                f"flowship's state layout changes from {old_layout!r} to {new_layout!r}: the new "
                "version would not find or not understand the stored state",
                "deploy the new code with the flowship release the running version uses, or "
                "migrate by replaying the input into a new job",
            )
        else:
            self.checked.append(f"state layout {new_layout} unchanged")
        old_flink, new_flink = self.old.get("flink_version"), self.new.get("flink_version")
        if _major_minor(old_flink) != _major_minor(new_flink):
            self.add(
                "flink_version_changed",
                "warning",
                "flink_version",
                f"Flink changes from {old_flink} to {new_flink}; savepoints are portable "
                "across versions only as the Flink compatibility table says",
                "check Flink's savepoint compatibility table for these versions, and upgrade "
                "Flink separately from the job's code",
            )

    # operators -------------------------------------------------------------------------------

    def operators(self) -> None:
        old_groups, new_groups = _uid_groups(self.old), _uid_groups(self.new)
        old_stateful, new_stateful = set(self.old["stateful"]), set(self.new["stateful"])
        dropped = set(self.new.get("dropped") or ())
        old_sources = {s["uid"]: s for s in self.old["sources"]}
        new_sources = {s["uid"]: s for s in self.new["sources"]}
        old_sinks = {s["uid"]: s for s in self.old["sinks"]}
        stateless = bool(self.new.get("stateless"))
        for uid in sorted(old_stateful - new_stateful):
            where = f"operator {uid}"
            gone = "is gone" if uid not in new_groups else "no longer declares state"
            if uid in dropped:
                self.add(
                    "state_dropped",
                    "warning",
                    where,
                    f"stateful operator {uid!r} {gone} and is listed in dropped: its state will "
                    "be discarded",
                    f"{_NON_RESTORED}; flowship passes it for dropped operators -- make sure "
                    "losing this state is intended",
                )
            else:
                states = ", ".join(sorted(self.old["stateful"][uid].get("states", {})))
                self.add(
                    "stateful_operator_removed",
                    "error",
                    where,
                    f"stateful operator {uid!r} (states: {states}) {gone} in the new version; "
                    "its state in the savepoint would have no owner",
                    f"keep the operator with uid {uid!r}, or list it in "
                    f"fs.Job(..., dropped=[{uid!r}]) to discard its state on purpose",
                )
        for uid in sorted(set(old_groups) - set(new_groups) - old_stateful):
            where = f"operator {uid}"
            if uid in dropped:
                self.add(
                    "state_dropped",
                    "warning",
                    where,
                    f"operator {uid!r} is gone and listed in dropped: its state (if any) will "
                    "be discarded",
                    f"{_NON_RESTORED}; make sure that is intended",
                )
            elif uid in old_sources:
                topic = old_sources[uid].get("topic")
                renamed = [
                    u
                    for u, s in new_sources.items()
                    if u not in old_sources and s["topic"] == topic
                ]
                also = f" (renamed to {renamed[0]!r}?)" if renamed else ""
                self.add(
                    "source_uid_changed",
                    "error",
                    where,
                    f"source uid {uid!r} (topic {topic!r}) is gone{also}: the Kafka offsets "
                    "live under the source uid in the savepoint, so the new version would "
                    "re-read the topic from its start position",
                    f"keep the uid {uid!r}; list it in dropped to drop the source on purpose",
                )
            elif uid in old_sinks and not stateless:
                self.add(
                    "sink_uid_changed",
                    "error",
                    where,
                    f"sink uid {uid!r} (topic {old_sinks[uid].get('topic')!r}) is gone: its "
                    "transaction state (commits still pending at the savepoint) lives under "
                    "that uid, and Flink refuses a savepoint whose state has no operator",
                    f"keep the uid {uid!r}; or list it in dropped to let that state go (after a "
                    "stop-with-savepoint nothing is pending); or, for a job without state, "
                    "declare fs.Job(..., stateless=True)",
                )
            else:
                self.add(
                    "operator_removed",
                    "warning",
                    where,
                    f"operator {uid!r} (and its uids {', '.join(old_groups[uid])}) is gone; "
                    "any state it holds (e.g. a sink's transaction state) is not restored",
                    f"{_NON_RESTORED}; keep the uid if the operator was only renamed",
                )
        for uid in sorted(set(new_groups) - set(old_groups)):
            what = "stateful operator" if uid in new_stateful else "operator"
            self.add(
                "operator_added",
                "warning",
                f"operator {uid}",
                f"{what} {uid!r} is new: it starts with empty state",
                "nothing to do if that is intended; if it replaces an operator, keep the old uid",
            )
        kept = sorted(set(old_groups) & set(new_groups))
        if kept:
            self.checked.append(f"operator uids kept: {', '.join(kept)}")

    def operator_states(
        self, uid: str, old_op: Mapping[str, Any], new_op: Mapping[str, Any]
    ) -> None:
        old_states, new_states = old_op.get("states", {}), new_op.get("states", {})
        for name in sorted(set(old_states) - set(new_states)):
            self.add(
                "state_removed",
                "error",
                f"operator {uid} / state {name}",
                f"state {name!r} of operator {uid!r} is no longer declared; its stored values "
                "would be silently left behind",
                f"keep declaring {name!r} in @fs.stateful({uid!r}, ...), or drop the whole "
                "operator (a new uid, the old one listed in dropped)",
            )
        for name in sorted(set(new_states) - set(old_states)):
            self.add(
                "state_added",
                "warning",
                f"operator {uid} / state {name}",
                f"state {name!r} of operator {uid!r} is new: it starts empty for every key",
                "make sure the operator copes with an empty value for existing keys",
            )
        for name in sorted(set(old_states) & set(new_states)):
            self.state(uid, name, old_states[name], new_states[name])

    def state(
        self, uid: str, name: str, old_st: Mapping[str, Any], new_st: Mapping[str, Any]
    ) -> None:
        base = f"operator {uid} / state {name}"
        if old_st.get("kind") != new_st.get("kind"):
            self.add(
                "state_kind_changed",
                "error",
                base,
                f"state {name!r} changes from {old_st.get('kind')} to {new_st.get('kind')} "
                "state: Flink stores the kinds differently and cannot convert them",
                f"keep {name!r} a {old_st.get('kind')} state, and declare a new state (new name) "
                "of the other kind",
            )
            return
        if self.old.get("state_layout") == self.new.get("state_layout") and old_st.get(
            "layout"
        ) != new_st.get("layout"):
            self.add(
                "state_layout_changed",
                "error",
                base,
                f"the layout of state {name!r} changes from {old_st.get('layout')!r} to "
                f"{new_st.get('layout')!r}",
                "deploy with the flowship release the running version uses",
            )
        new_versions = list(new_st.get("versions", []))
        if not new_versions:
            msg = f"the new manifest declares no versions for {base}"
            raise ConfigError(msg)
        current = new_versions[-1]
        by_fp: dict[str, Mapping[str, Any]] = {}
        for v in new_versions:
            by_fp[v["fingerprint"]] = v  # the newest declaring a fingerprint decodes it
        by_number = {v["version"]: v for v in new_versions}
        ok = self.new_steps(base, new_versions)
        stored: list[int] = []
        for v in old_st.get("versions", []):
            where = f"{base} / version {v['version']} (fingerprint {v['fingerprint']})"
            found = by_fp.get(v["fingerprint"])
            if found is None:
                ok = False
                self.unknown_writer(where, v, current)
                continue
            stored.append(int(found["version"]))
            if found["version"] != v["version"]:
                self.add(
                    "version_renumbered",
                    "warning",
                    where,
                    f"the stored version {v['version']} is declared as version "
                    f"{found['version']} in the new version; values decode as that version",
                    "keep version numbers stable: the history is easier to read",
                )
            same = by_number.get(v["version"])
            if same is not None and same["fingerprint"] == v["fingerprint"]:
                if not _same_schema(same["schema"], v["schema"]):
                    ok = False
                    self.add(
                        "version_rewritten",
                        "error",
                        where,
                        f"version {v['version']} is declared with a different schema than the "
                        "running version declares (same fingerprint: defaults, logical types "
                        "or aliases changed), so stored values would read differently",
                        f"restore version {v['version']} exactly as deployed and declare the "
                        f"change as version {len(new_versions) + 1}",
                    )
        if ok and stored:
            self.checked.append(
                f"{base}: stored versions {_numbers(sorted(set(stored)))} readable by "
                f"v{current['version']} ({self.route(new_versions, min(stored))})"
            )

    def new_steps(self, base: str, versions: list[Mapping[str, Any]]) -> bool:
        """Each step of new Avro cannot resolve must carry a migrate function."""
        ok = True
        for prev, nxt in itertools.pairwise(versions):
            if nxt.get("migration"):
                continue
            report = _compat(prev["schema"], nxt["schema"], f"{base} version {nxt['version']}")
            if not report.compatible:
                ok = False
                why = "; ".join(f"{p.path or '/'}: {p.message}" for p in report.errors)
                self.add(
                    "missing_migration",
                    "error",
                    f"{base} / version {nxt['version']}",
                    f"values of version {prev['version']} cannot be read as version "
                    f"{nxt['version']} by Avro resolution and the step has no migrate "
                    f"function: {why}",
                    f"declare migrations={{{nxt['version']}: fn}} in the StateSchema, or make "
                    "the change compatible",
                )
        return ok

    def unknown_writer(
        self, where: str, old_v: Mapping[str, Any], current: Mapping[str, Any]
    ) -> None:
        number = old_v["version"]
        report = _compat(old_v["schema"], current["schema"], where)
        why = (
            "Avro resolution alone could read its values, but stored values are decoded by "
            "their fingerprint, which no declared version has"
            if report.compatible
            else f"its values cannot be read as the new current version {current['version']}"
        )
        self.add(
            "unknown_writer_version",
            "error",
            where,
            f"the running version declares version {number}, so values written with it may "
            f"still be stored, but the new version does not declare that schema: {why}",
            f"keep version {number} declared as it was in StateSchema(versions=...) and add a "
            "new version (with a migrate function if Avro cannot resolve the change)",
        )
        for p in report.problems:
            self.add(
                p.kind,
                p.severity,
                f"{where} -> v{current['version']} reader schema {p.path or '/'}",
                p.message,
                p.hint,
            )

    @staticmethod
    def route(versions: list[Mapping[str, Any]], start: int) -> str:
        steps = [
            f"{prev['version']} -> {nxt['version']} by "
            + ("migrate function" if nxt.get("migration") else "Avro resolution")
            for prev, nxt in itertools.pairwise(versions)
            if nxt["version"] > start
        ]
        return ", ".join(steps) if steps else "current version, read as is"

    # sources and sinks -----------------------------------------------------------------------

    def sources(self) -> None:
        new_sources = {s["uid"]: s for s in self.new["sources"]}
        for old_s in self.old["sources"]:
            uid = old_s["uid"]
            new_s = new_sources.get(uid)
            if new_s is None:
                continue  # reported with the uids
            where = f"source {uid}"
            if old_s.get("topic") != new_s.get("topic"):
                self.add(
                    "source_topic_changed",
                    "warning",
                    where,
                    f"source {uid!r} reads topic {new_s.get('topic')!r} instead of "
                    f"{old_s.get('topic')!r}; the restored offsets are of the old topic",
                    "make sure the new topic's start position is what you want (offsets of a "
                    "topic not in the savepoint start from start_from)",
                )
            if _same_schema(old_s.get("schema"), new_s.get("schema")):
                self.checked.append(f"source {uid}: schema unchanged")
                continue
            report = _compat(old_s["schema"], new_s["schema"], where)
            self.add(
                "source_schema_changed",
                "warning",
                where,
                f"source {uid!r} decodes with a changed schema"
                + ("" if report.compatible else " that cannot read what the old one read"),
                "producers write with their own schema: records that no longer decode go to "
                f"the dead-letter topic {new_s.get('dead_letter_topic')!r}",
            )
            for p in report.problems:
                self.add(
                    "source_schema_changed",
                    "warning",
                    f"{where} reader schema {p.path or '/'}",
                    f"{p.kind}: {p.message}",
                    p.hint,
                )

    def sinks(self) -> None:
        new_sinks = {s["uid"]: s for s in self.new["sinks"]}
        for old_s in self.old["sinks"]:
            uid = old_s["uid"]
            new_s = new_sinks.get(uid)
            if new_s is None:
                continue
            where = f"sink {uid}"
            if old_s.get("topic") != new_s.get("topic"):
                self.add(
                    "sink_topic_changed",
                    "warning",
                    where,
                    f"sink {uid!r} writes topic {new_s.get('topic')!r} instead of "
                    f"{old_s.get('topic')!r}",
                    "make sure downstream consumers follow the new topic",
                )
            if _same_schema(old_s.get("schema"), new_s.get("schema")):
                self.checked.append(f"sink {uid}: schema unchanged")
                continue
            # consumers still read with the old schema: new is the writer
            report = _compat(new_s["schema"], old_s["schema"], where)
            for p in report.problems:
                error = p.severity == "error"
                self.add(
                    "sink_schema_incompatible" if error else "sink_schema_changed",
                    "error" if error else "warning",
                    f"{where} consumer (old) schema {p.path or '/'}",
                    f"{p.kind}: consumers reading with the old schema cannot read what the new "
                    f"version writes: {p.message}"
                    if error
                    else f"{p.kind}: {p.message}",
                    "evolve the sink schema compatibly (new fields with defaults), or write "
                    "to a new topic"
                    if error
                    else p.hint,
                )
            if report.compatible:
                self.checked.append(
                    f"sink {uid}: new schema readable by consumers of the old schema"
                )
        for old_s in self.old["sinks"]:
            new_s = new_sinks.get(old_s["uid"])
            if new_s is None or "key" not in old_s or "key" not in new_s:
                continue  # gone (reported with the uids), or recorded before keys were
            if old_s["key"] != new_s["key"]:
                self.add(
                    "sink_key_changed",
                    "warning",
                    f"sink {old_s['uid']}",
                    f"sink {old_s['uid']!r} makes its Kafka key from {new_s['key']} instead of "
                    f"{old_s['key']}: from the upgrade on, records of one key may land in "
                    "another partition, so per-key order across the upgrade and compaction by "
                    f"key no longer hold for topic {new_s.get('topic')!r}",
                    "keep the key; or write to a new topic, so consumers switch over knowingly",
                )

    # the stream graph ------------------------------------------------------------------------

    def graph(self) -> None:
        old_graph, new_graph = self.old.get("graph"), self.new.get("graph")
        if not isinstance(old_graph, Mapping) or not isinstance(new_graph, Mapping):
            side = "running version's" if not isinstance(old_graph, Mapping) else "new version's"
            self.checked.append(
                f"stream graphs not compared: the {side} manifest describes none (recorded by "
                "an older flowship, or computed without Flink); the declared uids were checked"
            )
            return
        by_id: dict[str, Mapping[str, Any]] = {}
        for op in new_graph["operators"]:
            by_id[op["id"]] = op
            if op.get("user_hash"):
                by_id[op["user_hash"]] = op  # Flink finds state under the pinned id first
        declared = set(self.old["operator_uids"]) | set(self.old["stateful"])
        dropped = set(self.new.get("dropped", []))
        kept = 0
        for op in old_graph["operators"]:
            if op["kind"] not in _STATEFUL_KINDS:
                continue
            new_op = by_id.get(op.get("user_hash") or op["id"])
            if new_op is not None:
                kept += 1
                self.key_and_parallelism(op, new_op)
                continue
            owner = _owner(op.get("uid"))
            if owner in declared or owner in dropped:
                continue  # reported with the declared uids, or let go on purpose
            if self.new.get("stateless") and op["kind"] != "source":
                continue  # a stateless job carries only its sources' offsets over
            self.graph_operator_gone(op)
        for op in new_graph["operators"]:
            if op["kind"] in _STATEFUL_KINDS and not op.get("uid") and not op.get("user_hash"):
                self.add(
                    "operator_without_uid",
                    "warning",
                    f"operator {op['name']}",
                    f"{op['kind']} operator {op['name']!r} has no uid: Flink finds its state "
                    "by a hash of the graph's shape around it, which the next change to the "
                    "graph changes",
                    "give it .uid('...'); for the upgrade that adds the uid, also pin its "
                    f"current id with .set_uid_hash('{op['id']}') so its state is found",
                )
        self.checked.append(f"stream graph: {kept} stateful operators keep their ids")

    def graph_operator_gone(self, op: Mapping[str, Any]) -> None:
        uid, name, kind = op.get("uid"), op["name"], op["kind"]
        consequence = (
            f"{_NON_RESTORED}: the old version would be stopped first and the new one "
            "refused, or (with another uid dropped) this state silently lost"
        )
        if uid:
            self.add(
                "graph_operator_removed",
                "error",
                f"operator {uid}",
                f"{kind} operator {uid!r} ({name}) holds state in the running version and is "
                f"gone from the new version's stream graph; flowship does not declare it (a "
                f"PyFlink operator written directly), and {consequence}",
                f"keep the operator with .uid({uid!r}), or list it in "
                f"fs.Job(..., dropped=[{uid!r}]) to discard its state on purpose",
            )
            return
        self.add(
            "operator_id_changed",
            "error",
            f"operator {name}",
            f"{kind} operator {name!r} has no uid; Flink finds its state by a hash of the "
            f"graph's shape ({op['id']}), and the new version's graph has no operator with "
            f"that id (the graph around it changed), so {consequence}",
            f"pin the id on the new version's operator with .set_uid_hash('{op['id']}') "
            "(and give it a .uid(...) for the versions after)",
        )

    def key_and_parallelism(self, old_op: Mapping[str, Any], new_op: Mapping[str, Any]) -> None:
        if old_op["kind"] != "keyed" or old_op.get("key") is None:
            return
        label = old_op.get("uid") or old_op["name"]
        where = f"operator {label}"
        old_key, new_key = old_op["key"], new_op.get("key")
        if new_key is None or new_key.get("fingerprint") != old_key.get("fingerprint"):
            now = "is no longer keyed" if new_key is None else f"is keyed by {new_key['type']}"
            self.add(
                "key_type_changed",
                "error",
                where,
                f"operator {label!r} {now}; the running version keys it by "
                f"{old_key['type']}, and its keyed state is stored under that key serializer: "
                "Flink cannot restore it (after the old version was stopped)",
                "keep the key type (key_by(..., key_type=...)); to re-key, give the operator a "
                "new uid and list the old one in dropped (its state starts empty), or migrate "
                "by replaying the input into a new job",
            )
        old_max, new_max = old_op.get("max_parallelism", -1), new_op.get("max_parallelism", -1)
        if new_max <= 0 or new_max == old_max:
            return  # left to Flink: it takes the savepoint's on restore
        if old_max > 0:
            self.add(
                "max_parallelism_changed",
                "error",
                where,
                f"operator {label!r} sets max parallelism {new_max}; the running version's is "
                f"{old_max}, and its keyed state is split into that many key groups: Flink "
                "refuses the restore (after the old version was stopped)",
                f"keep max parallelism {old_max} (or leave it unset: Flink then takes the "
                "savepoint's); changing it needs a replay into a new job",
            )
            return
        parallelism = old_op.get("parallelism", -1)
        derived = (
            f" (derived from parallelism {parallelism}: {_default_max_parallelism(parallelism)}, "
            "unless an earlier savepoint set it)"
            if parallelism > 0
            else ""
        )
        self.add(
            "max_parallelism_changed",
            "warning",
            where,
            f"operator {label!r} now sets max parallelism {new_max}; the running version left "
            f"it to Flink{derived}: if the running job's is not {new_max}, Flink refuses the "
            "restore after the old version was stopped",
            "read the running job's max parallelism (web UI, or REST /jobs/<id>: "
            "maxParallelism) and set exactly that, or leave it unset",
        )


def with_running_max_parallelism(
    manifest: Mapping[str, Any], vertices: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any]:
    """The running version's manifest with the max parallelism its job really has, where known.

    Its graph says -1 for an operator whose max parallelism it left to Flink, which derived one
    from the parallelism (or kept an earlier savepoint's). ``vertices``: the running job's, from
    ``GET /jobs/:id`` (each a chain of operators whose id is its first operator's, with the
    ``maxParallelism`` Flink gave it); keyed operators head their chains (a ``key_by`` breaks
    one). With them the gate says for certain whether the new version's restores.
    """
    graph = manifest.get("graph")
    if not isinstance(graph, Mapping):
        return manifest
    running = {
        str(v.get("id")): int(v["maxParallelism"])
        for v in vertices
        if isinstance(v.get("maxParallelism"), int) and v["maxParallelism"] > 0
    }
    operators = [
        {**op, "max_parallelism": running[op["id"]]}
        if op.get("max_parallelism", -1) <= 0 and op.get("id") in running
        else op
        for op in graph.get("operators", [])
    ]
    return {**manifest, "graph": {**graph, "operators": operators}}


def _uid_groups(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Operator uids by owner: a source with ``.decode``/``.dlq``, a sink with ``.encode``."""
    owned: dict[str, list[str]] = {}
    for s in manifest["sources"]:
        owned[s["uid"]] = [s["uid"], f"{s['uid']}.decode", f"{s['uid']}.dlq"]
    for s in manifest["sinks"]:
        owned[s["uid"]] = [s["uid"], f"{s['uid']}.encode"]
    members = {m for group in owned.values() for m in group}
    groups = {uid: [m for m in owned[uid] if m in manifest["operator_uids"]] for uid in owned}
    groups = {uid: g for uid, g in groups.items() if g}
    for uid in [*manifest["operator_uids"], *manifest["stateful"]]:
        if uid not in members:
            groups.setdefault(uid, [uid])
    return groups


#: Operator kinds in a graph description that hold state in a savepoint (flowship.job._graph).
_STATEFUL_KINDS = frozenset({"source", "sink", "committer", "keyed", "broadcast"})
#: A sink's committer carries the sink's uid behind this prefix.
_COMMITTER_PREFIX = "Sink Committer: "


def _owner(uid: str | None) -> str | None:
    """The uid an operator of the graph belongs to: a committer's is its sink's."""
    if uid and uid.startswith(_COMMITTER_PREFIX):
        return uid[len(_COMMITTER_PREFIX) :]
    return uid


def _default_max_parallelism(parallelism: int) -> int:
    """Flink's default max parallelism for ``parallelism`` (KeyGroupRangeAssignment)."""
    target = parallelism + parallelism // 2
    power = 1 << max(target - 1, 0).bit_length()
    return min(max(power, 128), 32768)


def _compat(writer: Any, reader: Any, where: str) -> CompatibilityReport:
    try:
        return check_compatibility(writer, reader)
    except SchemaError as exc:
        msg = f"a manifest holds a schema that does not parse ({where}): {exc}"
        raise ConfigError(msg) from exc
