"""``fs.Job``: a named, versioned job that wires Kafka sources, the author's operators and sinks."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowship.control._flags import Flag
from flowship.control._log import control_topic
from flowship.errors import ConfigError
from flowship.kafka import KafkaSink, KafkaSource

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, StreamExecutionEnvironment

    from flowship.job._settings import Settings

Topology = Callable[..., "DataStream | Mapping[KafkaSink, DataStream] | None"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class Job:
    """A named, versioned flowship job.

    Declare its Kafka sources and sinks, write the topology as a function that receives one
    stream of :class:`flowship.Record` per source (by the source's ``name``) and returns the
    stream for the sink (or a ``{sink: stream}`` mapping when there are several), then end the
    script with ``job.main()``::

        job = fs.Job("click-sessions", version="1", sources=[clicks], sinks=[stats])

        @job.topology
        def build(clicks):
            return clicks.key_by(user_of).process(SessionStats()).uid("session-stats")

        if __name__ == "__main__":
            job.main()
    """

    def __init__(
        self,
        name: str,
        version: str,
        *,
        sources: Sequence[KafkaSource],
        sinks: Sequence[KafkaSink],
        description: str = "",
        dropped: Sequence[str] = (),
        stateless: bool = False,
        flags: Sequence[Flag] = (),
        control: bool | None = None,
    ) -> None:
        if not _NAME.match(name):
            msg = (
                f"Job name {name!r} must be lowercase letters, digits, '.', '_' or '-' "
                "(at most 63): it names consumer groups, transactional ids and ledger entries"
            )
            raise ConfigError(msg)
        if not version or not isinstance(version, str):
            msg = f"Job {name!r}: version must be a non-empty string such as '1' or '2024.06.1'"
            raise ConfigError(msg)
        if not sources:
            msg = f"Job {name!r}: declare at least one KafkaSource"
            raise ConfigError(msg)
        self.name = name
        self.version = version
        self.description = description
        self.sources = list(sources)
        self.sinks = list(sinks)
        self._check_unique()
        self.dropped = tuple(dropped)
        self.stateless = stateless
        self.flags = tuple(flags)
        keys = [f.key for f in self.flags]
        bad = [f for f in self.flags if not isinstance(f, Flag)]
        if bad:
            msg = f"Job {name!r}: flags must be fs.Flag(...) declarations, got {bad!r}"
            raise ConfigError(msg)
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            msg = f"Job {name!r}: flag key(s) {dupes} declared more than once"
            raise ConfigError(msg)
        #: whether the job follows its control topic (flags, output routing): on by default
        #: when it declares flags
        self.control = bool(self.flags) if control is None else bool(control)
        self._topology: Topology | None = None
        #: the suffix of the consumer groups, transactional id prefixes and sink uids the
        #: deployment this run continues uses ("" or ".shadow"; see flowship.deploy.side_by_side)
        self.lane = ""
        caller = inspect.stack()[1]
        self.script = Path(caller.filename).resolve()
        self.module = str(caller.frame.f_globals.get("__name__", "__main__"))

    def _check_unique(self) -> None:
        seen: dict[str, str] = {}
        for kind, items in (("source", self.sources), ("sink", self.sinks)):
            for item in items:
                uids = (
                    [item.uid]
                    if kind == "sink"
                    else [item.uid, f"{item.uid}.decode", f"{item.uid}.dlq"]
                )
                for uid in uids:
                    if uid in seen:
                        msg = (
                            f"Job {self.name!r}: uid {uid!r} is used by {seen[uid]} and by "
                            f"{kind} {item.uid!r}; every operator uid must be unique"
                        )
                        raise ConfigError(msg)
                    seen[uid] = f"{kind} {item.uid!r}"
        names = [s.name for s in self.sources]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            msg = f"Job {self.name!r}: several sources share the name(s) {sorted(dupes)}"
            raise ConfigError(msg)

    @property
    def control_topic(self) -> str:
        """The job's control topic: ``<job>.control``."""
        return control_topic(self.name)

    def topology(self, fn: Topology) -> Topology:
        """Decorator: register the function that builds the job's graph between sources and sinks.

        Its parameters must be the sources' names; it is validated now, not at the first record.
        """
        if self._topology is not None:
            msg = f"Job {self.name!r}: a topology is already registered ({self._topology!r})"
            raise ConfigError(msg)
        params = list(inspect.signature(fn).parameters)
        expected = [s.name for s in self.sources]
        if sorted(params) != sorted(expected):
            msg = (
                f"Job {self.name!r}: topology {fn.__name__}() takes {params}, but the sources "
                f"are named {expected}; name its parameters after the sources"
            )
            raise ConfigError(msg)
        self._topology = fn
        return fn

    def build(
        self,
        env: StreamExecutionEnvironment,
        settings: Settings,
        *,
        rehearsal: str = "",
        replaces: str | None = None,
        shadow: bool = False,
    ) -> None:
        """Add the whole graph (sources, topology, sinks, dead letters) to ``env``.

        ``rehearsal`` (a ``--dry-run``'s suffix) isolates every Kafka name the graph uses.
        ``shadow`` (``--shadow``): every output goes to its side topic, with consumer groups,
        transactional ids and sink uids of its own.
        ``replaces``: the failed deployment an automatic rollback's run replays the input of
        (every output then names it in the ``flowship.replaces`` header).
        """
        from flowship.kafka._flink import add_sink, add_source

        self.check_stateless()
        if self._topology is None:
            msg = (
                f"Job {self.name!r} has no topology; decorate a function with "
                "@job.topology before calling main()"
            )
            raise ConfigError(msg)
        ctx = self._kafka_context(settings, rehearsal, replaces, shadow)
        streams = {s.name: add_source(env, s, ctx) for s in self.sources}
        out = self._topology(**streams)
        for sink, stream in self._sink_map(out).items():
            add_sink(stream, sink, ctx)

    def check_kafka(self, settings: Settings) -> None:
        """Check that Kafka answers and that every source topic exists (one metadata request).

        A deployment calls it before anything is recorded or stopped, a dry run before it takes
        a savepoint: a typo in ``--kafka-bootstrap`` or in a topic name then fails within
        seconds, naming the address or the topic, instead of starting a job that waits for a
        broker or a topic that is not there. ClusterError when Kafka does not answer (exit 4),
        ConfigError naming each missing topic (exit 2).
        """
        from flowship._kafka import check_kafka

        check_kafka(
            settings.kafka_bootstrap,
            {s.topic: f"source {s.uid!r} of job {self.name!r}" for s in self.sources},
        )

    def create_topics(
        self, settings: Settings, *, rehearsal: str = "", shadow: bool = False
    ) -> None:
        """Create the topics this version's control plane needs where they are missing.

        Its control topic and each sink's side topic (``<topic>.side.<version>``); nothing
        for a job without a control plane. A ``shadow`` routes every output to a side topic
        unless a rule says otherwise: each sink's and each dead-letter topic's, control plane
        or not. Kafka I/O, so not part
        of :meth:`build`: a deployment calls it once the ledger and the running version were
        checked, before anything is recorded or stopped (ClusterError when Kafka does not
        answer).
        """
        if shadow:
            from flowship.deploy.rehearse import create_twin_topics
            from flowship.kafka._declare import side_topic

            topics = [s.topic for s in self.sinks] + [s.dead_letter_topic for s in self.sources]
            create_twin_topics(
                settings.kafka_bootstrap, {side_topic(t, self.version): t for t in topics}
            )
        if not self.control:
            return
        from flowship.control._topics import ensure_job_topics

        # dead letters are routed like every other output: their topics have side topics too
        ensure_job_topics(
            self._kafka_context(settings, rehearsal, shadow=shadow),
            [s.topic for s in self.sinks] + [s.dead_letter_topic for s in self.sources],
        )

    def _kafka_context(
        self, settings: Settings, rehearsal: str, replaces: str | None = None, shadow: bool = False
    ) -> Any:
        from flowship.kafka._flink import KafkaContext

        return KafkaContext(
            bootstrap=settings.kafka_bootstrap,
            job=self.name,
            version=self.version,
            bounded=settings.bounded,
            rehearsal=rehearsal,
            control_topic=self.control_topic if self.control else None,
            flags=self.flags,
            environment=settings.environment,
            replaces=replaces,
            shadow=shadow,
            lane=self.lane,
        )

    def _sink_map(self, out: Any) -> dict[KafkaSink, Any]:
        if out is None and not self.sinks:
            return {}
        if isinstance(out, Mapping):
            unknown = [s for s in out if s not in self.sinks]
            missing = [s.uid for s in self.sinks if s not in out]
            if unknown or missing:
                msg = (
                    f"Job {self.name!r}: topology returned streams for "
                    f"{[getattr(s, 'uid', s) for s in out]}, declared sinks are "
                    f"{[s.uid for s in self.sinks]} (missing {missing})"
                )
                raise ConfigError(msg)
            return dict(out)
        if len(self.sinks) == 1 and out is not None:
            return {self.sinks[0]: out}
        msg = (
            f"Job {self.name!r}: topology returned {type(out).__name__}; return one stream "
            f"when the job has one sink, else a {{sink: stream}} mapping"
        )
        raise ConfigError(msg)

    def check_stateless(self) -> None:
        """A ``stateless=True`` job must declare no state: refuse one that does (ConfigError)."""
        if not self.stateless:
            return
        from flowship.state import registered

        stateful = sorted(registered(self.module))
        if stateful:
            msg = (
                f"Job {self.name!r} is declared stateless=True but has stateful operators "
                f"{stateful}: stateless upgrades would let their state go; remove "
                "stateless=True (upgrades then check and carry the state)"
            )
            raise ConfigError(msg)

    def manifest(
        self, execution_mode: str = "thread", graph: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What this version holds (uids, state schemas and fingerprints, sources, sinks, ...).

        Computed from the code alone: no Flink, no Kafka. ``graph`` adds the description of a
        built stream graph (``flowship.job._graph``), which the gate then compares too. See
        :mod:`flowship.job._manifest`.
        """
        from flowship.job._manifest import build_manifest

        return build_manifest(self, execution_mode, graph)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Command-line entry point: parse flags/env, run or submit the job, exit with its code."""
        # imported here, not at the top: a TaskManager's Python imports this module with the
        # job's code and never deploys, so it does not load the deployer (no import cycle:
        # flowship.job._main imports nothing from this module)
        from flowship.job._main import run_main

        raise SystemExit(run_main(self, sys.argv[1:] if argv is None else list(argv)))
