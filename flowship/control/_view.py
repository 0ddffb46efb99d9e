"""The control topic's records and what they add up to (pure Python: no Kafka client here).

A job's control topic (``<job>.control``, one partition, compacted) is the single, totally
ordered log of its flag rules. Records (key -> JSON value):

=========================  ================================================================
``version/<version>``      what a version declares: its flags, its sources and their groups
``hello/<instance>``       an instance (one source decoder subtask of one running version)
                           started: job, version, source, topic, consumer group, the flags
                           it declares; a tombstone when it stops cleanly
``beat/<instance>``        it is alive (every second), with the input offsets it has reached
``propose/<id>``           a rule change for one flag, in force from per-partition cuts
``ack/<id>/<instance>``    that instance holds the rule, and had not reached any cut
``nack/<id>/<instance>``   it had passed a cut already (the change must not go ahead)
``commit/<id>``            the change is in force (written after every live instance acked)
``abort/<id>``             it is in force nowhere (a nack, a silent instance, a timeout)
=========================  ================================================================

**The first ``commit``/``abort`` for a proposal in log order is its decision**; a later one is
ignored, so a setter and an instance that both decide agree on what counts. Keys are unique per
proposal and decision, so compaction never drops a rule in force; ``hello``/``beat`` keys are
rewritten in place and tombstoned when an instance stops.

For a record at (topic, partition, offset), the configuration of flag F is that of the last
committed proposal for F (in commit order) whose cut on that partition is at or below the
offset; no such proposal: F's declared default. That is a function of the log and the record's
address alone: every subtask, every restore and every replay computes the same.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from flowship.control._rules import FlagConfig

#: An instance whose last heartbeat is older than this (broker time) is not counted as running.
LIVE_WINDOW_MS = 10_000


@dataclass
class Instance:
    """One running source-decoder subtask of one version, as its hello record says."""

    id: str
    job: str
    version: str
    source: str
    topic: str
    group: str
    subtask: int
    host: str
    flags: list[dict[str, Any]]
    environment: str
    hello_at: int
    beat_at: int = 0
    positions: dict[int, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-serializable summary."""
        return {
            "id": self.id,
            "version": self.version,
            "source": self.source,
            "topic": self.topic,
            "subtask": self.subtask,
            "host": self.host,
            "environment": self.environment,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
        }


@dataclass
class Proposal:
    """A rule change for one flag and what became of it."""

    id: str
    flag: str
    config: FlagConfig
    cuts: dict[str, dict[int, int]]
    timeout_ms: int
    by: str
    offset: int
    proposed_at: int
    decision: str | None = None  # "commit" | "abort"
    reason: str = ""
    decided_at: int = 0
    acks: set[str] = field(default_factory=set)
    nacks: dict[str, str] = field(default_factory=dict)

    def cut(self, topic: str, partition: int) -> int:
        """The offset from which this proposal applies on ``topic``/``partition``.

        A partition the proposal did not know of (added to the topic later) starts under it.
        """
        return self.cuts.get(topic, {}).get(partition, 0)

    def describe(self) -> dict[str, Any]:
        """JSON-serializable summary (``flowship flag history --json``)."""
        return {
            "id": self.id,
            "flag": self.flag,
            "rules": self.config.text(),
            "cuts": {t: {str(p): o for p, o in sorted(c.items())} for t, c in self.cuts.items()},
            "decision": self.decision or "pending",
            "reason": self.reason,
            "by": self.by,
            "proposed_at": self.proposed_at,
            "decided_at": self.decided_at,
            "acks": sorted(self.acks),
            "nacks": dict(sorted(self.nacks.items())),
        }


def encode(value: dict[str, Any] | None) -> bytes | None:
    """A control record's value as it is written (compact JSON, or a tombstone)."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class ControlView:
    """Everything the control log says so far, folded record by record in log order."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.proposals: dict[str, Proposal] = {}
        #: committed proposals in commit order
        self.committed: list[Proposal] = []
        #: the next offset to read (everything below is folded in)
        self.position = 0
        #: proposals whose decision is still open
        self.pending: dict[str, Proposal] = {}
        #: bumped on every change that can alter a decision (commits, aborts, proposals)
        self.generation = 0
        #: version -> what it declares (flags, sources), last registered last
        self.versions: dict[str, dict[str, Any]] = {}

    def apply(self, key: str, value: bytes | None, offset: int, timestamp: int) -> None:
        """Fold one record (``timestamp``: the broker's append time, in ms)."""
        self.position = offset + 1
        kind, _, rest = key.partition("/")
        if value is None:
            if kind == "hello":
                self.instances.pop(rest, None)
            return
        try:
            data = json.loads(value)
        except ValueError:
            return  # not ours: ignore rather than stop every instance of the job
        if kind == "version":
            self.versions.pop(rest, None)
            self.versions[rest] = data
        elif kind == "hello":
            # a later attempt of the same subtask replaces one that died without a goodbye
            for old in list(self.instances.values()):
                if (old.job, old.version, old.source, old.subtask) == (
                    data["job"],
                    data["version"],
                    data["source"],
                    int(data["subtask"]),
                ) and old.beat_at < timestamp:
                    del self.instances[old.id]
            self.instances[rest] = Instance(
                id=rest,
                job=data["job"],
                version=data["version"],
                source=data["source"],
                topic=data["topic"],
                group=data["group"],
                subtask=int(data["subtask"]),
                host=data.get("host", ""),
                flags=list(data.get("flags", [])),
                environment=data.get("environment", ""),
                hello_at=timestamp,
                beat_at=timestamp,
            )
        elif kind == "beat":
            instance = self.instances.get(rest)
            if instance is not None:
                instance.beat_at = timestamp
                instance.positions = {int(p): int(o) for p, o in data.get("positions", {}).items()}
        elif kind == "propose":
            if rest in self.proposals:
                return
            proposal = Proposal(
                id=rest,
                flag=data["flag"],
                config=FlagConfig.from_description(data["config"]),
                cuts={t: {int(p): int(o) for p, o in c.items()} for t, c in data["cuts"].items()},
                timeout_ms=int(data.get("timeout_ms", 30_000)),
                by=data.get("by", ""),
                offset=offset,
                proposed_at=timestamp,
            )
            self.proposals[rest] = proposal
            self.pending[rest] = proposal
            self.generation += 1
        elif kind in ("ack", "nack"):
            pid, _, instance_id = rest.partition("/")
            acked = self.proposals.get(pid)
            if acked is None:
                return
            if kind == "ack":
                acked.acks.add(instance_id)
            else:
                acked.nacks[instance_id] = str(data.get("reason", ""))
        elif kind in ("commit", "abort"):
            decided = self.proposals.get(rest)
            if decided is None or decided.decision is not None:
                return  # the first decision in log order stands
            proposal = decided
            proposal.decision = kind
            proposal.reason = str(data.get("reason", ""))
            proposal.decided_at = timestamp
            self.pending.pop(rest, None)
            if kind == "commit":
                self.committed.append(proposal)
            self.generation += 1

    # -- questions ---------------------------------------------------------------------------

    def live(self, now_ms: int, window_ms: int = LIVE_WINDOW_MS) -> list[Instance]:
        """Instances that run: said hello, no goodbye, beat within ``window_ms``.

        An instance a later attempt of its subtask replaced is gone already (see :meth:`apply`).
        """
        return [i for i in self.instances.values() if now_ms - i.beat_at <= window_ms]

    def plan(self) -> Plan:
        """An immutable snapshot of the decisions so far, for the processing thread."""
        return Plan(self.generation, tuple(self.committed), tuple(self.pending.values()))


@dataclass(frozen=True)
class Plan:
    """Committed and pending proposals at one moment: all a record's decision depends on."""

    generation: int
    committed: tuple[Proposal, ...]
    pending: tuple[Proposal, ...]

    def config_at(self, flag: str, topic: str, partition: int, offset: int) -> FlagConfig | None:
        """The configuration of ``flag`` for the record at ``topic/partition/offset``."""
        found: Proposal | None = None
        for proposal in self.committed:
            if proposal.flag == flag and proposal.cut(topic, partition) <= offset:
                found = proposal
        return None if found is None else found.config

    def in_force(self, flag: str, topic: str, partition: int) -> FlagConfig | None:
        """The configuration of ``flag`` for the next records of a partition (latest cuts)."""
        return self.config_at(flag, topic, partition, 2**62)

    def segment(self, topic: str, partition: int, offset: int) -> tuple[int, int, Proposal | None]:
        """``(start, end, hold)`` around ``offset`` on one partition.

        Every record in ``[start, end)`` gets the same configurations. ``hold`` is an undecided
        proposal whose cut is at or below ``offset``: the record must wait for its decision.
        """
        hold: Proposal | None = None
        for proposal in self.pending:
            if proposal.cut(topic, partition) <= offset:
                hold = proposal
                break
        bounds = sorted(
            {p.cut(topic, partition) for p in self.committed}
            | {p.cut(topic, partition) for p in self.pending}
        )
        at = bisect_right(bounds, offset)
        start = bounds[at - 1] if at else 0
        end = bounds[at] if at < len(bounds) else 2**62
        return start, end, hold
