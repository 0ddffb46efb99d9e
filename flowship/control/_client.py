"""Changing and reading a job's flag rules: what ``flowship flag set/show/history`` run.

``set_flag`` is the setter's half of the protocol in :mod:`flowship.control._agent`:

1. read the control topic to its end; find the versions that run (instances that beat within
   the live window, by broker time: the setter first writes a ``ping`` and reads its time);
2. choose the cut, per input partition: when a version runs, the end offset now plus a lead
   of ``LEAD_S`` seconds of the partition's current write rate (the lead lets running
   instances read the proposal before they get there); when none runs, the consumer group's
   committed offset (where the next run starts);
3. write ``propose``; wait until every running instance acked. A ``nack`` (an instance had
   passed the cut) aborts and retries with a later cut; silence past the timeout aborts and
   fails; both leave the change in force nowhere;
4. write ``commit`` and read it back: the first decision in the log counts (an instance may have
   aborted a proposal it waited on too long).
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowship._kafka import admin_client, consumer, serve_logs
from flowship.control._flags import ROUTE, Flag
from flowship.control._log import ControlLog, control_topic
from flowship.control._routing import RunningVersion, check_routing
from flowship.control._rules import FlagConfig, parse_rules
from flowship.control._view import LIVE_WINDOW_MS, ControlView, Instance, Proposal
from flowship.errors import ClusterError, ConfigError, ControlError, FlagError

DEFAULT_TIMEOUT_S = 30.0
RETRIES = 3
#: The cut's lead over the input's end, in seconds of its current rate (times the attempt)
LEAD_S = 2.0
RATE_SAMPLE_S = 0.25


@dataclass(frozen=True)
class FlagChange:
    """A rule change in force: the flag, its rules, and the cut from which they apply."""

    proposal: Proposal
    instances: tuple[str, ...]
    attempts: int
    seconds: float

    def describe(self) -> dict[str, Any]:
        """JSON-serializable summary."""
        return {
            **self.proposal.describe(),
            "acknowledged_by": list(self.instances),
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
        }


def _declared(view: ControlView, versions: Sequence[str]) -> dict[str, dict[str, Flag]]:
    """Version -> flag key -> Flag, for ``versions`` (as their instances registered them)."""
    out: dict[str, dict[str, Flag]] = {}
    for version in versions:
        data = view.versions.get(version, {})
        flags = {f.key: f for f in (Flag.from_description(d) for d in data.get("flags", []))}
        flags[ROUTE.key] = ROUTE
        out[version] = flags
    return out


class FlagClient:
    """The flag rules of one job, on its control topic."""

    def __init__(self, bootstrap: str, job: str, *, topic: str | None = None) -> None:
        self.job = job
        self.bootstrap = bootstrap
        self.topic = topic or control_topic(job)
        self._log = ControlLog(bootstrap, self.topic)
        self._log.check_exists()
        self._setter = f"{socket.gethostname()}:{os.getpid()}"
        self._admin: Any = None

    def close(self) -> None:
        """Close the Kafka clients."""
        self._log.close()

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> ControlView:
        """The control topic's view, read to its end."""
        return self._log.read_to_end()

    def now(self) -> int:
        """The broker's clock (ms): write a ping and read its append time back."""
        key = f"ping/{self._setter}"
        self._log.write(key, {"at": time.time()})
        self._log.read_own_writes()
        return self._log.last_timestamp

    def running(self) -> list[Instance]:
        """Instances of the job that are running now (beat within the live window)."""
        now = self.now()
        return self._log.view.live(now)

    def target_versions(self, live: Sequence[Instance]) -> list[str]:
        """The versions a change must suit: the running ones, else the last one that ran."""
        view = self._log.view
        if live:
            return sorted({i.version for i in live})
        if view.versions:
            return [list(view.versions)[-1]]
        msg = (
            f"no version of job {self.job!r} has run with its control plane (control topic "
            f"{self.topic!r} has no registration); start the job first: its flags are declared "
            "in its code and registered when it starts"
        )
        raise ConfigError(msg)

    def versions_of(self, versions: Sequence[str]) -> list[RunningVersion]:
        """``versions`` as they registered: started beside another or not, and environment."""
        view = self._log.view
        return [
            RunningVersion(
                v,
                shadow=bool(view.versions.get(v, {}).get("shadow", False)),
                environment=str(view.versions.get(v, {}).get("environment", "")),
            )
            for v in versions
        ]

    def _check(self, flag: str, config: FlagConfig, versions: Sequence[str]) -> None:
        declared = _declared(self._log.view, versions)
        holders = [v for v in versions if flag in declared[v]]
        if not holders:
            known = sorted({k for d in declared.values() for k in d})
            msg = (
                f"flag {flag!r} is not declared by job {self.job!r} (version(s) "
                f"{', '.join(versions)}); declared flags: {known}"
            )
            raise FlagError(msg)
        for version in holders:
            try:
                config.check(declared[version][flag])
            except FlagError as exc:
                msg = f"{exc} (as declared by version {version})"
                raise FlagError(msg) from None

    def _cuts(
        self, live: Sequence[Instance], versions: Sequence[str], attempt: int = 1
    ) -> dict[str, dict[int, int]]:
        from confluent_kafka import KafkaException

        view = self._log.view
        sources: dict[str, set[str]] = {}
        for version in versions:
            for source in view.versions.get(version, {}).get("sources", []):
                sources.setdefault(source["topic"], set()).add(source["group"])
        parts_of = self._partitions(sources)
        try:
            cuts: dict[str, dict[int, int]] = {}
            for topic, groups in sorted(sources.items()):
                parts = parts_of[topic]
                ends = self.ends(topic, parts)
                if live:
                    # a lead: records written while the change is agreed stay under the old
                    # rule, so a running instance has not passed the cut when it reads it
                    time.sleep(RATE_SAMPLE_S)
                    later = self.ends(topic, parts)
                    cuts[topic] = {
                        p: later[p]
                        + math.ceil((later[p] - ends[p]) / RATE_SAMPLE_S * LEAD_S * attempt)
                        for p in parts
                    }
                    continue
                # nothing runs: from where the next run starts (the group's committed offsets)
                cuts[topic] = self.committed(sorted(groups), topic, parts)
            return cuts
        except KafkaException as exc:
            msg = f"Kafka at {self.bootstrap} did not answer ({exc})"
            raise ClusterError(msg) from exc

    def _partitions(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """Each of the job's input ``topics`` -> its partitions (ConfigError if one is missing)."""
        from confluent_kafka import KafkaException

        reader = consumer(self.bootstrap, **{"group.id": "flowship.control.cuts"})
        try:
            out: dict[str, list[int]] = {}
            for topic in sorted(topics):
                info = reader.list_topics(topic, timeout=10).topics.get(topic)
                if info is None or info.error is not None:
                    msg = (
                        f"input topic {topic!r} of job {self.job!r} is missing on {self.bootstrap}"
                    )
                    raise ConfigError(msg)
                out[topic] = sorted(info.partitions)
            return out
        except KafkaException as exc:
            msg = f"Kafka at {self.bootstrap} did not answer ({exc})"
            raise ClusterError(msg) from exc
        finally:
            reader.close()

    def ends(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The end offset of each of ``topic``'s ``partitions`` now, one request per broker."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        if self._admin is None:
            self._admin = admin_client(self.bootstrap)
        try:
            futures = self._admin.list_offsets(
                {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                request_timeout=10,
            )
            return {tp.partition: int(f.result().offset) for tp, f in futures.items()}
        finally:
            serve_logs(self._admin)

    def set_flag(
        self,
        flag: str,
        rules: Sequence[str] | FlagConfig,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = RETRIES,
    ) -> FlagChange:
        """Put ``rules`` in force for ``flag`` at an agreed cut; return the change.

        Raises :class:`FlagError` (bad flag or rule, nothing written), :class:`ConfigError`
        (no version ever ran), :class:`ControlError` (not agreed: in force nowhere).
        """
        config = rules if isinstance(rules, FlagConfig) else parse_rules(list(rules))
        started = time.monotonic()
        self.read()
        last_problem = ""
        for attempt in range(1, retries + 1):
            live = self.running()
            versions = self.target_versions(live)
            self._check(flag, config, versions)
            cuts = self._cuts(live, versions, attempt)
            if flag == ROUTE.key:  # never two versions' outputs for one input in production
                before = self.in_force(ROUTE.key)
                check_routing(
                    config,
                    self.versions_of(versions),
                    cuts,
                    FlagConfig() if before is None else before.config,
                )
            pid = uuid.uuid4().hex[:12]
            self._log.write(
                f"propose/{pid}",
                {
                    "flag": flag,
                    "config": config.describe(),
                    "cuts": {t: {str(p): o for p, o in c.items()} for t, c in cuts.items()},
                    "timeout_ms": int(timeout_s * 1000),
                    "by": self._setter,
                },
            )
            expected = {i.id for i in live}
            problem = self._await(pid, expected, timeout_s)
            if problem is None:
                self._log.write(f"commit/{pid}", {"by": self._setter})
                self._log.read_own_writes()
                proposal = self._log.view.proposals[pid]
                if proposal.decision == "commit":
                    return FlagChange(
                        proposal, tuple(sorted(expected)), attempt, time.monotonic() - started
                    )
                problem = f"an instance aborted it first: {proposal.reason}"
                raise ControlError(self._failed(flag, problem))
            self._log.write(f"abort/{pid}", {"reason": problem, "by": self._setter})
            self._log.read_own_writes()
            last_problem = problem
            if not self._log.view.proposals[pid].nacks:
                break  # silence is not fixed by a later cut
        raise ControlError(self._failed(flag, last_problem))

    def _failed(self, flag: str, problem: str) -> str:
        return (
            f"flag {flag!r} of job {self.job!r}: the change was not agreed ({problem}); it is in "
            "force nowhere. Check that every running version of the job is healthy "
            f"(`flowship flag show {self.job}` lists the instances), then set it again"
        )

    def _await(self, pid: str, expected: set[str], timeout_s: float) -> str | None:
        """None when every expected instance acked; else what went wrong."""
        deadline = time.monotonic() + timeout_s
        view = self._log.view
        while True:
            proposal = view.proposals.get(pid)
            if proposal is not None:
                if proposal.nacks:
                    return "; ".join(proposal.nacks.values())
                if proposal.decision == "abort":
                    return proposal.reason or "aborted"
                gone = {i for i in expected if i not in view.instances}
                if expected - gone <= proposal.acks:
                    return None
            if time.monotonic() > deadline:
                silent = sorted(expected - (proposal.acks if proposal else set()))
                return f"no acknowledgement within {timeout_s:g} s from {', '.join(silent)}"
            self._log.poll(0.05)

    def in_force(self, flag: str) -> Proposal | None:
        """The latest committed change of ``flag`` (None: its declared default everywhere)."""
        found = None
        for proposal in self.read().committed:
            if proposal.flag == flag:
                found = proposal
        return found

    def wait_registered(self, version: str, timeout_s: float = 120.0) -> list[Instance]:
        """Wait until ``version`` registered and an instance of it runs; those instances.

        ConfigError past ``timeout_s``: a version that has not opened its sources after that
        long is not there to take part in a change.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            live = [i for i in self.running() if i.version == version]
            if live and version in self._log.view.versions:
                return live
            if time.monotonic() > deadline:
                msg = (
                    f"version {version} of job {self.job!r} has no running instance on control "
                    f"topic {self.topic!r} after {timeout_s:g} s; is it running? "
                    f"(`flowship status {self.job}`)"
                )
                raise ConfigError(msg)
            self._log.poll(0.5)

    def source_partitions(self, version: str) -> dict[str, list[int]]:
        """Input topic -> its partitions, for the sources ``version`` registered."""
        sources = self.read().versions.get(version, {}).get("sources", [])
        return self._partitions({s["topic"] for s in sources})

    def committed(
        self, groups: Sequence[str], topic: str, partitions: Sequence[int]
    ) -> dict[int, int]:
        """The lowest offset ``groups`` committed on each of ``topic``'s partitions (0: none)."""
        from confluent_kafka import KafkaException, TopicPartition

        lowest = dict.fromkeys(partitions, 2**62)
        for group in groups:
            reader = consumer(self.bootstrap, **{"group.id": group})
            try:
                found = reader.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            except KafkaException as exc:
                msg = f"Kafka at {self.bootstrap} did not answer ({exc})"
                raise ClusterError(msg) from exc
            finally:
                reader.close()
            for tp in found:
                lowest[tp.partition] = min(lowest[tp.partition], max(int(tp.offset), 0))
        return {p: (o if o < 2**62 else 0) for p, o in lowest.items()}

    # -- reading ------------------------------------------------------------------------------

    def show(self) -> dict[str, Any]:
        """Rules in force per flag (with cuts), pending changes, running instances."""
        live = self.running()
        view = self._log.view
        versions = self.target_versions(live) if (live or view.versions) else []
        declared = _declared(view, versions)
        flags: dict[str, Any] = {}
        for version, by_key in declared.items():
            for key, flag in by_key.items():
                entry = flags.setdefault(key, {"declared": flag.describe(), "versions": []})
                entry["versions"].append(version)
        for key, entry in flags.items():
            last = None
            for proposal in view.committed:
                if proposal.flag == key:
                    last = proposal
            entry["rules"] = last.config.text() if last else "none"
            entry["since"] = last.describe()["cuts"] if last else {}
            entry["change"] = last.id if last else None
        return {
            "job": self.job,
            "control_topic": self.topic,
            "flags": dict(sorted(flags.items())),
            "pending": [p.describe() for p in view.pending.values()],
            "instances": [i.describe() for i in sorted(live, key=lambda i: i.id)],
            "live_window_ms": LIVE_WINDOW_MS,
        }

    def history(self) -> list[dict[str, Any]]:
        """Every proposal in log order, with its decision and cuts."""
        view = self.read()
        return [p.describe() for p in sorted(view.proposals.values(), key=lambda p: p.offset)]


def rules_in_force(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """Flag key -> the rules of its latest committed change (JSON form); {} without a topic."""
    log = ControlLog(bootstrap, topic, write=False)
    try:
        try:
            log.check_exists()
        except ConfigError:
            return {}
        view = log.read_to_end()
        latest: dict[str, dict[str, Any]] = {}
        for proposal in view.committed:
            latest[proposal.flag] = proposal.config.describe()
        return latest
    finally:
        log.close()


def retire_instances(bootstrap: str, topic: str, version: str | None = None) -> list[str]:
    """Say goodbye for the instances of a job version that was stopped (all, without version).

    A version stopped with a savepoint does not always get to say goodbye itself; a setter
    would wait for its silent instances until their beats age out. The deployer calls this
    once the stop is confirmed. Returns the instance ids retired.
    """
    log = ControlLog(bootstrap, topic)
    try:
        try:
            log.check_exists()
        except ConfigError:
            return []
        view = log.read_to_end()
        gone = [i.id for i in view.instances.values() if version is None or i.version == version]
        for instance in gone:
            log.write(f"beat/{instance}", None, flush=False)
            log.write(f"hello/{instance}", None, flush=False)
        log.flush()
        return gone
    finally:
        log.close()
