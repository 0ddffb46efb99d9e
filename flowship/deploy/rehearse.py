"""``--dry-run``: the parts of a rehearsal that need no PyFlink: naming, state reading, report.

A dry run checks the new code against the running version (the same gate as an upgrade), gets
state without stopping anything (a savepoint taken while the job keeps running, a retained
checkpoint, or a given path), reads every key of every declared state with the new code's
:class:`~flowship.schema.StateCodec`, and rehearses the new code from that state in a throwaway
mini-cluster on a bounded sample of input. Everything the rehearsal touches in Kafka carries a
suffix of its own (:func:`rehearsal_suffix`): sink and dead-letter topics, consumer groups,
transactional id prefixes and the sinks' operator uids. Nothing is written to the ledger and no
lease is taken.

Reading every key: :func:`read_state` runs ``dev.flowship.state.DumpKeyedState`` (Flink's State
Processor API, ``jvm/state-reader``) on the savepoint; it prints each stored value, which
:func:`decode_dump` decodes here. This module never imports PyFlink.
"""

from __future__ import annotations

import base64
import collections
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowship._jars import find_state_reader
from flowship._kafka import admin_client, serve_logs, transient_error
from flowship._kafka import consumer as kafka_consumer
from flowship.deploy.diff import OutputDiff, read_outputs
from flowship.errors import ClusterError, ConfigError, MissingJarError, StateError
from flowship.schema import StateCodec

#: Every Kafka name and sink uid of a rehearsal ends with ``.dryrun-<token>``.
SUFFIX_PREFIX = ".dryrun-"
#: Failures listed per state in a report (all are counted).
MAX_FAILURES_LISTED = 20
_FP = struct.Struct("<BQ")


def new_token() -> str:
    """A fresh token naming one dry run (time-ordered, unique)."""
    return f"{time.strftime('%Y%m%dt%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def rehearsal_suffix(token: str) -> str:
    """The suffix a rehearsal puts on every Kafka name it uses (``.dryrun-<token>``)."""
    return SUFFIX_PREFIX + token


def rehearsal_name(name: str, suffix: str) -> str:
    """``name`` as a rehearsal with ``suffix`` uses it (unchanged when ``suffix`` is empty)."""
    if suffix and not suffix.startswith(SUFFIX_PREFIX):
        msg = f"rehearsal suffix {suffix!r} must start with {SUFFIX_PREFIX!r}"
        raise ConfigError(msg)
    return name + suffix


# reading every key ------------------------------------------------------------------------


@dataclass
class StateRead:
    """What reading one state of one operator found."""

    uid: str
    state: str
    kind: str
    keys: int = 0
    values: int = 0
    migrated: int = 0
    writers: dict[str, int] = field(default_factory=dict)  # "vN fp" -> values
    failures: list[dict[str, str]] = field(default_factory=list)
    failed: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        """Whether every stored value decoded."""
        return self.failed == 0


@dataclass
class OperatorRead:
    """Reading one stateful operator: its key type, its states, or why it could not be read."""

    uid: str
    key_type: str = ""
    missing: bool = False
    error: str = ""
    states: list[StateRead] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the operator's state was read and every value decoded."""
        return not self.error and all(s.ok for s in self.states)


def reader_command(savepoint: str, out: Path, specs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The ``java`` command that dumps ``specs`` ({uid: {state: kind}}) from ``savepoint``."""
    java = shutil.which("java", path=os.environ.get("PATH"))
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        java = str(Path(home) / "bin" / "java")
    if java is None:
        msg = "the dry run reads state with a JVM, and no `java` is on PATH (nor JAVA_HOME)"
        raise MissingJarError(msg)
    pyflink = _pyflink_dir()
    python_jars = sorted((pyflink / "opt").glob("flink-python-*.jar"))
    classpath = os.pathsep.join(
        [str(find_state_reader()), str(pyflink / "lib" / "*"), *map(str, python_jars)]
    )
    args = [
        f"{uid}:" + ",".join(f"{name}={kind}" for name, kind in states.items())
        for uid, states in specs.items()
    ]
    path = savepoint.removeprefix("file://").removeprefix("file:")
    return [java, "-cp", classpath, "dev.flowship.state.DumpKeyedState", path, str(out), *args]


def _pyflink_dir() -> Path:
    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:  # pragma: no cover - pyflink is a dependency
        msg = "the pyflink package (apache-flink) is not installed"
        raise MissingJarError(msg)
    return Path(spec.origin).parent


def read_state(
    savepoint: str,
    kinds: Mapping[str, Mapping[str, str]],
    codecs: Mapping[tuple[str, str], StateCodec],
    work_dir: Path,
    timeout: float = 600.0,
) -> list[OperatorRead]:
    """Read every key of every state in ``kinds`` ({uid: {state: kind}}) from ``savepoint``."""
    if not kinds:
        return []
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "state-dump.tsv"
    log = work_dir / "state-reader.log"
    cmd = reader_command(savepoint, out, kinds)
    with log.open("wb") as sink:
        try:
            done = subprocess.run(
                cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            msg = f"reading the state of {savepoint} took over {timeout:.0f}s (log: {log})"
            raise StateError(msg) from exc
    if done.returncode != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        msg = f"the state reader failed on {savepoint} (exit {done.returncode}; log {log}):\n{tail}"
        raise StateError(msg)
    with out.open(encoding="utf-8") as lines:
        return decode_dump(lines, kinds, codecs)


def decode_dump(
    lines: Any,
    kinds: Mapping[str, Mapping[str, str]],
    codecs: Mapping[tuple[str, str], StateCodec],
) -> list[OperatorRead]:
    """Decode the reader's output lines (see ``DumpKeyedState``) with the new code's codecs."""
    ops = {
        uid: OperatorRead(
            uid, states=[StateRead(uid, name, kind) for name, kind in sorted(states.items())]
        )
        for uid, states in kinds.items()
    }
    by_state = {(s.uid, s.state): s for op in ops.values() for s in op.states}
    keys: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        tag, uid = fields[0], fields[1] if len(fields) > 1 else ""
        op = ops.get(uid)
        if op is None:
            continue
        if tag == "K":
            op.key_type = fields[2]
        elif tag == "M":
            op.missing = True
            for s in op.states:
                s.note = "no state in the savepoint (a new operator starts empty)"
        elif tag == "E":
            op.error = fields[2] if len(fields) > 2 else "unknown error"
        elif tag == "V":
            _decode_value(fields, by_state, keys, codecs)
    for (uid, name), found in keys.items():
        by_state[(uid, name)].keys = len(found)
    return list(ops.values())


def _decode_value(
    fields: list[str],
    by_state: Mapping[tuple[str, str], StateRead],
    keys: dict[tuple[str, str], set[str]],
    codecs: Mapping[tuple[str, str], StateCodec],
) -> None:
    _, uid, name, b64key, b64entry, b64raw = fields
    read = by_state.get((uid, name))
    if read is None:
        return
    key = base64.b64decode(b64key).decode("utf-8", errors="replace")
    entry = base64.b64decode(b64entry).decode("utf-8", errors="replace") if b64entry else ""
    raw = base64.b64decode(b64raw)
    keys[(uid, name)].add(key)
    read.values += 1
    codec = codecs[(uid, name)]
    schema = codec.state_schema
    if len(raw) >= _FP.size and raw[0] == 1:
        fp = _FP.unpack_from(raw)[1]
        version = schema.version_of(fp)
        label = f"v{version} {fp:016x}" if version is not None else f"unknown {fp:016x}"
    else:
        fp, label = None, "not flowship state"
    read.writers[label] = read.writers.get(label, 0) + 1
    try:
        codec.decode(raw, uid=uid, state=name, key=key if not entry else f"{key}[{entry}]")
    except StateError as exc:
        read.failed += 1
        if len(read.failures) < MAX_FAILURES_LISTED:
            read.failures.append({"key": key, "entry": entry, "error": str(exc)})
        return
    if fp != schema.fingerprint():
        read.migrated += 1


# the report --------------------------------------------------------------------------------


@dataclass
class Rehearsal:
    """What the throwaway run of the new code on a sample of input did."""

    ran: bool = False
    passed: bool = False
    truncated: bool = False
    records_in: int = 0
    outputs: dict[str, int] = field(default_factory=dict)  # suffixed topic -> committed records
    dead_letters: dict[str, int] = field(default_factory=dict)
    error: str = ""
    log: str = ""
    seconds: float = 0.0


@dataclass
class DryRunReport:
    """Everything a dry run found; ``passed`` decides the exit code."""

    job: str
    version: str
    running_version: str
    token: str
    gate: dict[str, Any]
    state_from: str = ""
    state_source: str = ""  # savepoint | latest-checkpoint | path
    operators: list[OperatorRead] = field(default_factory=list)
    state_error: str = ""
    state_not_read: str = ""  # why state was not read key by key (reported, not a failure)
    rehearsal: Rehearsal = field(default_factory=Rehearsal)
    #: per sink: the rehearsal's outputs against production's for the same input records
    #: (:class:`flowship.deploy.diff.OutputDiff` in JSON form); reported, never a failure
    diffs: list[dict[str, Any]] = field(default_factory=list)
    #: why the outputs were not compared (empty when they were)
    diff_skipped: str = ""

    @property
    def gate_passed(self) -> bool:
        """Whether ``check_upgrade`` found the versions compatible."""
        return bool(self.gate.get("compatible"))

    @property
    def state_ok(self) -> bool:
        """Whether every stored value of every declared state decoded."""
        return not self.state_error and all(op.ok for op in self.operators)

    @property
    def passed(self) -> bool:
        """Gate passed, all state read, rehearsal passed."""
        return self.gate_passed and self.state_ok and self.rehearsal.passed

    def to_json(self) -> dict[str, Any]:
        """The report as printed by ``--dry-run --json`` and kept under the state dir."""
        out = asdict(self)
        out["passed"] = self.passed
        out["state_ok"] = self.state_ok
        return out

    def failures(self) -> list[dict[str, str]]:
        """Every listed (uid, state, key, error) that failed to read."""
        return [
            {"uid": s.uid, "state": s.state, **f}
            for op in self.operators
            for s in op.states
            for f in s.failures
        ]


def format_report(report: DryRunReport) -> str:
    """The human-readable dry-run report."""
    lines = [
        f"dry run of {report.job} version {report.version} against running version "
        f"{report.running_version} (dry run {report.token})",
        f"gate: {'compatible' if report.gate_passed else 'INCOMPATIBLE'} "
        f"({report.gate.get('errors', 0)} errors, {report.gate.get('warnings', 0)} warnings)",
    ]
    for problem in report.gate.get("problems", []):
        lines.append(f"  {problem.get('severity')} {problem.get('kind')} at {problem.get('where')}")
    if report.state_from:
        lines.append(f"state: {report.state_source} {report.state_from}")
    if report.state_error:
        lines.append(f"state read FAILED: {report.state_error}")
    if report.state_not_read:
        lines.append(f"state NOT READ key by key: {report.state_not_read}")
    for op in report.operators:
        head = f"  operator {op.uid!r}"
        if op.error:
            lines.append(f"{head}: FAILED to read: {op.error}")
            continue
        if op.missing:
            lines.append(f"{head}: no state in the savepoint (new operator, starts empty)")
            continue
        lines.append(f"{head} (key type {op.key_type or '?'}):")
        for s in op.states:
            writers = ", ".join(f"{label} x{n}" for label, n in sorted(s.writers.items()))
            status = "ok" if s.ok else f"{s.failed} FAILED"
            lines.append(
                f"    {s.kind} state {s.state!r}: {s.keys} keys, {s.values} values, "
                f"{s.migrated} migrated, writers [{writers or 'none'}]: {status}"
            )
            for f in s.failures:
                entry = f"[{f['entry']}]" if f["entry"] else ""
                lines.append(f"      key {f['key']!r}{entry}: {f['error']}")
            if s.failed > len(s.failures):
                lines.append(f"      ... and {s.failed - len(s.failures)} more")
    r = report.rehearsal
    if r.ran:
        verdict = "passed" if r.passed else "FAILED"
        lines.append(
            f"rehearsal: {verdict} in {r.seconds:.0f}s: {r.records_in} records from the "
            f"sample{' (stopped at the time limit)' if r.truncated else ''}"
        )
        for topic, n in sorted(r.outputs.items()):
            lines.append(f"  output {topic}: {n} records (committed)")
        for topic, n in sorted(r.dead_letters.items()):
            lines.append(f"  dead letters {topic}: {n}")
        if r.error:
            lines.append(f"  error: {r.error}")
        if r.log:
            lines.append(f"  log: {r.log}")
    for diff in report.diffs:
        lines.append(f"output diff: {OutputDiff(**diff).summary()}")
        for example in diff["examples"]:
            lines.append(
                f"  input {example['input']} differs in {', '.join(example['fields'])}: "
                f"production {_short(example['production'])}, rehearsal "
                f"{_short(example['candidate'])}"
            )
    if report.diff_skipped:
        lines.append(f"output diff: not made: {report.diff_skipped}")
    lines.append(
        f"dry run {'PASSED' if report.passed else 'FAILED'}: nothing production uses was "
        "changed (no ledger entry, no lease, the running job untouched)"
    )
    return "\n".join(lines)


def _short(outputs: Any, limit: int = 300) -> str:
    text = json.dumps(outputs, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def save_report(report: DryRunReport, directory: Path) -> Path:
    """Keep the report as ``report.json`` in the dry run's own directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True, default=str))
    return path


# Kafka: the rehearsal's own topics, and what it wrote to them ------------------------------


def create_twin_topics(bootstrap: str, topics: Mapping[str, str]) -> None:
    """Create each topic with as many partitions as its production twin, where missing.

    ``topics`` maps new name (a rehearsal's suffixed topic, a shadow's side topic) ->
    production name; production topics are only described.
    """
    from confluent_kafka.admin import NewTopic

    admin = admin_client(bootstrap, log_level=3)
    existing = admin.list_topics(timeout=15).topics
    serve_logs(admin)
    new = []
    for name, twin in topics.items():
        if name in existing:
            continue
        partitions = len(existing[twin].partitions) if twin in existing else 1
        new.append(NewTopic(name, num_partitions=max(partitions, 1), replication_factor=1))
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                msg = f"creating topic {name!r} on {bootstrap} failed: {exc}"
                raise ConfigError(msg) from exc
        finally:
            serve_logs(admin)


def count_committed(bootstrap: str, topic: str, timeout: float = 30.0) -> int:
    """How many committed records ``topic`` holds (read_committed, from the beginning)."""
    return len(read_outputs(bootstrap, topic, timeout=timeout))


def end_offsets(
    bootstrap: str, topics: list[str], wait_s: float = 30.0
) -> dict[tuple[str, int], int]:
    """The end (high watermark) offset of every partition of ``topics``, right now.

    A topic that does not exist is left out (nothing was written to it). One just created may
    have no leader yet: asked again for up to ``wait_s``, then ClusterError (never a partition
    of an existing topic left out).
    """
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    consumer = kafka_consumer(
        bootstrap,
        **{
            "group.id": f"flowship.dryrun-reader.{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "log_level": 3,
        },
    )
    out: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + wait_s
    try:
        for topic in topics:
            while True:
                try:
                    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                    error = None if meta is None else meta.error
                    if meta is None or (
                        error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                    ):
                        break  # not there: nothing written to it
                    if error is None:
                        ends = {
                            (topic, p): int(
                                consumer.get_watermark_offsets(
                                    TopicPartition(topic, p), timeout=10
                                )[1]
                            )
                            for p in meta.partitions
                        }
                        out.update(ends)
                        break
                except KafkaException as exc:
                    error = exc.args[0] if exc.args else None
                    if error is None or not transient_error(error):
                        msg = f"cannot read the end offsets of {topic!r} at {bootstrap}: {exc}"
                        raise ClusterError(msg) from exc
                if time.monotonic() >= deadline:
                    msg = (
                        f"topic {topic!r} at {bootstrap} has no leader for a partition after "
                        f"{wait_s:.0f} s ({error}); check the broker"
                    )
                    raise ClusterError(msg)
                time.sleep(0.2)
    finally:
        consumer.close()
    return out


def committed_offsets(
    bootstrap: str, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """``group``'s committed offset of each partition (negative: none committed)."""
    from confluent_kafka import TopicPartition

    consumer = kafka_consumer(
        bootstrap,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 3,
        },
    )
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): int(tp.offset) for tp in found}
    finally:
        consumer.close()


def sample_consumed(
    ends: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, int], int],
    settled: bool,
) -> bool:
    """Whether a rehearsal's source committed every partition up to the sample's end.

    ``settled``: the committed offsets did not move for a while; then one offset short of the
    end is also done (a transactional input ends with a commit marker, which no record follows).
    """
    for tp, end in ends.items():
        if end <= 0:
            continue
        done = committed.get(tp, -1)
        if done >= end or (settled and done >= end - 1):
            continue
        return False
    return True
