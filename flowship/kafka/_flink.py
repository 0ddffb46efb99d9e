"""PyFlink wiring of flowship's Kafka sources and sinks (imports PyFlink; used at build time).

Source: the Flink Kafka connector with flowship's ``ProvenanceDeserializationSchema`` (Java),
which hands Python each record packed in one byte array (partition, offset, timestamp, key,
value); a Python ``ProcessFunction`` decodes the Avro value into a :class:`Record`, or sends the
raw record to the dead-letter side output. Sinks: a Python map packs key, headers and the
Avro-encoded value into one byte array that flowship's ``PackedRecordSerializationSchema`` writes
to the sink's topic with an exactly-once KafkaSink.

Why byte arrays: every field of a row crosses between the JVM and Python as a conversion of its
own; one array per record costs one. The layouts are documented on the two Java classes, and
``pack_sink_record`` / ``unpack_source_record`` below are their Python halves.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.common import Row, RowKind, Types, WatermarkStrategy
from pyflink.datastream import (
    DataStream,
    KeyedStream,
    KeySelector,
    MapFunction,
    OutputTag,
    ProcessFunction,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.kafka import KafkaSink as _PyKafkaSink
from pyflink.datastream.connectors.kafka import KafkaSource as _PyKafkaSource
from pyflink.java_gateway import get_gateway
from pyflink.util.java_utils import load_java_class

from flowship.control._agent import Agent, Decider
from flowship.control._flags import ROUTE_KEY, SIDE, Flag
from flowship.errors import PayloadError
from flowship.kafka import _headers as H
from flowship.kafka._declare import KafkaSink, KafkaSource, side_topic
from flowship.kafka._record import Record, decisions_of
from flowship.schema import AvroCodec
from flowship.state._runtime import CONTROL_OF, KEY_OF

PACKED = Types.PRIMITIVE_ARRAY(Types.BYTE())
_new_object = object.__new__

# ProvenanceDeserializationSchema: partition, offset, timestamp, key length, value length
_SOURCE_HEAD = struct.Struct(">iqqii")
_INT = struct.Struct(">i")
_NO_KEY = _INT.pack(-1)

# Kafka's broker default transaction.max.timeout.ms is 15 min; the connector's default producer
# transaction timeout (1 h) would be refused, so stay below it.
_TXN_TIMEOUT_MS = "600000"


@dataclass(frozen=True)
class KafkaContext:
    """What the wiring needs from the job: where Kafka is and who is writing."""

    bootstrap: str
    job: str
    version: str
    bounded: bool = False
    #: ``--dry-run``'s suffix (``.dryrun-<token>``): every topic written, consumer group,
    #: transactional id prefix and sink uid gets it, so a rehearsal never touches production's
    rehearsal: str = ""
    #: the job's control topic when its control plane is on (flags, output routing), else None
    control_topic: str | None = None
    #: the flags the job declares
    flags: tuple[Flag, ...] = ()
    #: the ``environment`` setting (``env=`` rules match it)
    environment: str = "default"
    #: a rollback's run replaying the input from the pre-upgrade savepoint: the failed
    #: deployment, named on every output (header ``flowship.replaces``)
    replaces: str | None = None
    #: started beside the running version (``--shadow``, ``--canary``): its routing sends every
    #: output to its side topic unless a rule sends it to production (``flowship promote``)
    shadow: bool = False
    #: what consumer groups, transactional id prefixes and sink uids end with: "" or
    #: :data:`SHADOW_SUFFIX`. A version started beside another takes the other lane; an upgrade
    #: keeps the lane of the deployment it continues (see :meth:`isolated`)
    lane: str = ""

    def side_topic(self, topic: str) -> str:
        """Where this version writes the outputs its routing sends aside."""
        return self.named(side_topic(topic, self.version))

    def named(self, name: str) -> str:
        """``name`` as this run uses it (with the rehearsal's suffix in a dry run)."""
        return name + self.rehearsal

    def isolated(self, name: str) -> str:
        """A consumer group, transactional id prefix or sink uid as this run uses it.

        A rehearsal's and a shadow's differ from production's, so neither commits offsets for
        production's groups nor aborts or claims production's transactions and sink state:
        a rehearsal's by its suffix, a version beside another by its lane.
        """
        return self.named(name) + self.lane


#: What a shadow's consumer groups, transactional id prefixes and sink uids end with.
SHADOW_SUFFIX = ".shadow"


def group_id(source: KafkaSource, ctx: KafkaContext) -> str:
    """The consumer group ``source`` reads with in this run."""
    return ctx.isolated(source.group_id or f"flowship.{ctx.job}.{source.uid}")


def unpack_source_record(
    packed: bytes,
) -> tuple[int, int, int, bytes | None, bytes | None]:
    """(partition, offset, timestamp, key, value) from ``ProvenanceDeserializationSchema``."""
    if not isinstance(packed, bytes):  # process mode may hand over a bytearray
        packed = bytes(packed)
    partition, offset, timestamp, key_len, value_len = _SOURCE_HEAD.unpack_from(packed)
    at = _SOURCE_HEAD.size
    key = None
    if key_len >= 0:
        key = packed[at : at + key_len]
        at += key_len
    value = packed[at : at + value_len] if value_len >= 0 else None
    return partition, offset, timestamp, key, value


def pack_headers(headers: list[tuple[str, str]]) -> bytes:
    """The length-prefixed header block of a packed sink record."""
    encoded = H.encode_headers(headers).encode()
    return _INT.pack(len(encoded)) + encoded


def pack_sink_record(key: bytes | None, headers: bytes, value: bytes) -> bytes:
    """One record for ``PackedRecordSerializationSchema``; ``headers`` from :func:`pack_headers`."""
    if key is None:
        return b"".join((_NO_KEY, headers, value))
    return b"".join((_INT.pack(len(key)), key, headers, value))


def _keyed_row(key: Any, record: Record) -> Row:
    """``Row(key, record)``, built without ``Row.__init__``'s per-attribute ``__setattr__``.

    The attributes are exactly those ``Row(key, record)`` has (a unit test holds them equal);
    this runs once per input record.
    """
    row = _new_object(Row)
    attributes = row.__dict__
    attributes["_values"] = [key, record]
    attributes["_from_dict"] = False
    attributes["_row_kind"] = RowKind.INSERT
    return row


def _subtask_index(runtime_context: Any) -> int:
    """The index of the subtask ``runtime_context`` belongs to.

    PyFlink 2.2.1's thread mode calls ``getIndexOfThisSubtask`` on the Java runtime context,
    which Flink 2 moved to ``getTaskInfo()``: ask there when that fails.
    """
    try:
        return int(runtime_context.get_index_of_this_subtask())
    except AttributeError:
        java = runtime_context._runtime_context
        return int(java.getTaskInfo().getIndexOfThisSubtask())


class DecodeAvro(ProcessFunction):
    """A packed source record -> Record, or a packed dead-letter record on the side output.

    With ``key_selector``, it also keys the record (``Row(key, Record)``, what PyFlink's
    ``key_by`` hands to ``keyBy``), so decoding and keying run as one Python operator: PyFlink
    does not chain an operator that has a side output with its consumer. Without ``dlq_tag``
    (a second branch of the same source), records that do not decode are dropped: the first
    branch dead-letters them, exactly once.
    """

    def __init__(
        self,
        source: KafkaSource,
        ctx: KafkaContext,
        dlq_tag: OutputTag | None,
        key_selector: Callable[[Record], Any] | None = None,
    ) -> None:
        self._schema = source.schema
        self._uid = source.uid
        self._topic = source.topic
        self._job = ctx.job
        self._version = ctx.version
        self._tag = dlq_tag
        self._key_selector = key_selector
        self._codec: AvroCodec | None = None
        self._ctx = ctx
        self._aside = ctx.shadow
        self._group = group_id(source, ctx)
        self._agent: Agent | None = None
        self._decider: Decider | None = None
        self._release: weakref.finalize[Any, Any] | None = None

    def open(self, runtime_context: Any) -> None:
        self._codec = AvroCodec(self._schema, where=f"KafkaSource {self._uid!r} schema")
        ctx = self._ctx
        if ctx.control_topic is not None:
            agent = Agent(
                ctx.bootstrap,
                ctx.control_topic,
                job=ctx.job,
                version=ctx.version,
                source=self._uid,
                source_topic=self._topic,
                group=self._group,
                subtask=_subtask_index(runtime_context),
                flags=ctx.flags,
                environment=ctx.environment,
                passive=bool(ctx.rehearsal),
                shadow=ctx.shadow,
            )
            agent.start()
            self._agent = agent
            self._decider = Decider(
                agent, self._topic, ctx.flags, ctx.environment, ctx.version, shadow=ctx.shadow
            )
            # PyFlink (thread mode) calls close() only when the input ends, never when the task
            # is cancelled, fails over or stops with a savepoint: there the operator is only
            # dropped. Without this the agent would go on beating (a running instance to every
            # flag setter) and its Kafka clients would live as long as the TaskManager.
            self._release = weakref.finalize(self, agent.stop_in_background)

    def close(self) -> None:
        if self._release is not None:
            self._release.detach()
            self._release = None
        if self._agent is not None:
            self._agent.stop()
            self._agent = None

    def process_element(self, packed: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        codec = self._codec
        assert codec is not None  # set in open()
        partition, offset, timestamp, key, value = unpack_source_record(packed)
        topic = self._topic
        decider = self._decider
        try:
            decoded = codec.decode(value)  # type: ignore[arg-type]
        except PayloadError as exc:
            if self._tag is None:
                return
            # a dead letter is an output of its input record: routed like the others
            decided = None if decider is None else decider.decide(partition, offset, key, {})
            routed = decisions_of(decided)
            route = None if routed is None else routed.get(ROUTE_KEY)
            # no decision (no control plane): a version beside another sends it aside
            aside = [(H.ROUTE, SIDE)] if route == SIDE or (route is None and self._aside) else []
            headers = pack_headers(
                [
                    (H.ERROR, str(exc)),
                    (H.ERROR_TYPE, type(exc.__cause__ or exc).__name__),
                    (H.SOURCE_UID, self._uid),
                    (H.SOURCE_TOPIC, topic),
                    (H.SOURCE_PARTITION, str(partition)),
                    (H.SOURCE_OFFSET, str(offset)),
                    (H.SOURCE_TIMESTAMP, str(timestamp)),
                    (H.JOB, self._job),
                    (H.VERSION, self._version),
                    *aside,
                ]
            )
            yield self._tag, pack_sink_record(key, headers, value if value is not None else b"")
            return
        decided = None if decider is None else decider.decide(partition, offset, key, decoded)
        # tuple.__new__: the NamedTuple constructor is a Python-level call per record
        record = tuple.__new__(Record, (decoded, key, topic, partition, offset, timestamp, decided))
        if self._key_selector is None:
            yield record
        else:
            yield _keyed_row(self._key_selector(record), record)


class SourceStream(DataStream):
    """The stream of :class:`Record` a flowship source hands to the job's topology.

    A plain PyFlink ``DataStream`` to the job author. Its decoding operator is added when the
    stream is first used: ``key_by`` (the usual first step) gets one fused decode-and-key
    operator, anything else the plain decoder. Only the first use dead-letters records that do
    not decode; later uses of the same source decode on their own and skip them.
    """

    def __init__(
        self,
        env: StreamExecutionEnvironment,
        raw: DataStream,
        source: KafkaSource,
        ctx: KafkaContext,
    ) -> None:
        # DataStream.__init__ only sets _j_data_stream, which is lazy here
        self._env = env
        self._raw = raw
        self._source = source
        self._ctx = ctx
        self._decoded: DataStream | None = None
        self._dead_lettered = False
        self._branches = 0

    @property
    def _j_data_stream(self) -> Any:
        if self._decoded is None:
            self._decoded = self._decode(key_selector=None, key_type=None)
        return self._decoded._j_data_stream

    def _decode(self, key_selector: Any, key_type: Any) -> DataStream:
        source = self._source
        tag = None if self._dead_lettered else OutputTag(f"{source.uid}.dead-letter", PACKED)
        first = tag is not None
        self._dead_lettered = True
        function = DecodeAvro(source, self._ctx, tag, key_selector)
        self._branches += 1
        uid = f"{source.uid}.decode" if first else f"{source.uid}.decode.{self._branches}"
        if key_selector is None:
            decoded = self._raw.process(function)
        else:
            decoded = self._raw.process(
                function, output_type=Types.ROW([key_type, Types.PICKLED_BYTE_ARRAY()])
            )
        decoded = decoded.uid(uid).name(f"decode:{source.uid}")
        if tag is not None:
            dlq_sink = _kafka_sink(
                self._ctx, f"{source.uid}.dlq", source.dead_letter_topic, side=True
            )
            dead = DataStream(decoded._j_data_stream.getSideOutput(tag.get_java_output_tag()))
            # a task of its own: chained, its transactional writer's start-up (aborting lingering
            # transactions, initTransactions: most of a second) would delay the opening of the
            # source's decoder, and with it the first record, on every start and upgrade.
            # Dead letters are rare, so the extra hop costs nothing; state does not care
            # (restore goes by uid, not by chain). One writer is enough for them: each parallel
            # one is a transactional producer to start and a transaction on every checkpoint
            # (Flink rescales the sink's state from savepoints written with more)
            dead.sink_to(dlq_sink).uid(self._ctx.isolated(f"{source.uid}.dlq")).name(
                f"dead-letter:{source.dead_letter_topic}"
            ).disable_chaining().set_parallelism(1)
        return decoded

    def key_by(self, key_selector: Any, key_type: Any = None) -> KeyedStream:
        """Decode and key in one operator (the first use); as PyFlink's ``key_by`` otherwise."""
        if self._decoded is not None or self._dead_lettered:
            return super().key_by(key_selector, key_type)
        if isinstance(key_selector, KeySelector):
            selector = key_selector.get_key
        elif callable(key_selector):
            selector = key_selector
        else:
            msg = f"key_by on source {self._source.uid!r}: key_selector must be callable"
            raise TypeError(msg)
        key_type = key_type or Types.PICKLED_BYTE_ARRAY()
        keyed = self._decode(selector, key_type)
        j_keyed = keyed._j_data_stream.keyBy(
            get_gateway().jvm.KeyByKeySelector(), Types.ROW([key_type]).get_java_type_info()
        )
        stream = KeyedStream(j_keyed, Types.PICKLED_BYTE_ARRAY(), self)
        # flowship.apply hands the selector to stateful operators: they key their state
        # handles from the element in Python, not by asking the JVM for the current key
        setattr(stream, KEY_OF, selector)
        if self._ctx.control_topic is not None:
            # their timers' outputs take the decisions of their key's last input record
            setattr(stream, CONTROL_OF, True)
        return stream


class EncodeAvro(MapFunction):
    """dict | Record -> one packed record for ``PackedRecordSerializationSchema``."""

    def __init__(self, sink: KafkaSink, ctx: KafkaContext) -> None:
        self._schema = sink.schema
        self._uid = sink.uid
        self._topic = sink.topic
        self._key = sink.key
        #: the headers every output carries first (its version; a replay's failed deployment)
        self._common = [(H.VERSION, ctx.version)]
        if ctx.replaces:
            self._common.append((H.REPLACES, ctx.replaces))
        #: a version started beside another sends aside what carries no routing decision
        #: (an output that is not a Record): only a rule may send its outputs to production
        self._aside = ctx.shadow
        self._codec: AvroCodec | None = None

    def open(self, runtime_context: Any) -> None:
        self._codec = AvroCodec(self._schema, where=f"KafkaSink {self._uid!r} schema")
        # the headers are the same for every record but the provenance: encode them once
        self._production_headers = pack_headers(self._common)
        self._plain_headers = (
            pack_headers([*self._common, (H.ROUTE, SIDE)])
            if self._aside
            else self._production_headers
        )
        self._source_prefix = H.encode_headers([*self._common, (H.SOURCE, "")])
        #: (topic, partition) -> the encoded headers up to the offset: "...topic/partition/"
        self._provenance: dict[tuple[str, int], bytes] = {}

    def _provenance_prefix(self, topic: str, partition: int) -> bytes:
        # topic names cannot contain NUL, so the provenance needs no escaping
        prefix = f"{self._source_prefix}{topic}/{partition}/".encode()
        if len(self._provenance) < 4096:  # sources' partitions, bounded anyway
            self._provenance[(topic, partition)] = prefix
        return prefix

    def map(self, element: Any) -> bytes:
        codec = self._codec
        assert codec is not None  # set in open()
        if isinstance(element, Record):
            value, _, topic, partition, offset, _, decided = element
            decisions = decisions_of(decided)
            route = None if decisions is None else decisions.get(ROUTE_KEY)
            if route == SIDE or (route is None and self._aside):
                where = [(H.SOURCE, f"{topic}/{partition}/{offset}")] if offset >= 0 else []
                headers = pack_headers([*self._common, *where, (H.ROUTE, SIDE)])
            elif offset < 0:  # a timer's output: its key's last input decisions, no provenance
                headers = self._production_headers
            else:
                prefix = self._provenance.get((topic, partition))
                if prefix is None:
                    prefix = self._provenance_prefix(topic, partition)
                at = b"%d" % offset
                headers = b"".join((_INT.pack(len(prefix) + len(at)), prefix, at))
        else:
            headers = self._plain_headers
            value = element
        try:
            payload = codec.encode(value)
        except PayloadError as exc:
            msg = f"KafkaSink {self._uid!r} (topic {self._topic!r}): {exc}; value was {value!r}"
            raise PayloadError(msg) from exc
        key_fn = self._key
        if key_fn is None:
            key = None
        elif isinstance(key_fn, str):
            key = value.get(key_fn)
        else:
            key = key_fn(value)
        if isinstance(key, str):
            key = key.encode()
        elif key is not None and not isinstance(key, bytes):
            key = str(key).encode()
        return pack_sink_record(key, headers, payload)


def _jvm() -> Any:
    return get_gateway().jvm


def _properties(props: dict[str, str]) -> Any:
    j_props = _jvm().java.util.Properties()
    for k, v in props.items():
        j_props.setProperty(k, v)
    return j_props


def _offsets(start_from: str) -> Any:
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetResetStrategy,
        KafkaOffsetsInitializer,
    )

    if start_from == "earliest":
        init = KafkaOffsetsInitializer.earliest()
    elif start_from == "latest":
        init = KafkaOffsetsInitializer.latest()
    else:
        init = KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)
    return init._j_initializer


def add_source(
    env: StreamExecutionEnvironment, source: KafkaSource, ctx: KafkaContext
) -> DataStream:
    """Add ``source`` (and its dead-letter sink) to ``env``; return the stream of Records."""
    builder = _jvm().org.apache.flink.connector.kafka.source.KafkaSource.builder()
    builder.setBootstrapServers(ctx.bootstrap)
    topics = _jvm().java.util.ArrayList()
    topics.add(source.topic)
    builder.setTopics(topics)
    builder.setGroupId(group_id(source, ctx))
    builder.setStartingOffsets(_offsets(source.start_from))
    if ctx.bounded:
        builder.setBounded(_offsets("latest"))
    props = {
        "isolation.level": "read_committed",
        "partition.discovery.interval.ms": "10000",
        **source.properties,
    }
    builder.setProperties(_properties(props))
    deserializer = load_java_class("dev.flowship.kafka.ProvenanceDeserializationSchema")
    builder.setDeserializer(deserializer.newInstance())
    raw = env.from_source(
        _PyKafkaSource(builder.build()), WatermarkStrategy.no_watermarks(), f"kafka:{source.uid}"
    ).uid(source.uid)
    return SourceStream(env, raw, source, ctx)


def _kafka_sink(
    ctx: KafkaContext,
    uid: str,
    topic: str,
    extra: dict[str, str] | None = None,
    *,
    side: bool = False,
) -> Any:
    jvm = _jvm()
    serializer = (
        load_java_class("dev.flowship.kafka.PackedRecordSerializationSchema")
        .newInstance()
        .withTopic(ctx.named(topic))
    )
    if (ctx.control_topic is not None or ctx.shadow) and side:
        serializer = serializer.withSideTopic(ctx.side_topic(topic))
    props = {"transaction.timeout.ms": _TXN_TIMEOUT_MS, **(extra or {})}
    builder = (
        jvm.org.apache.flink.connector.kafka.sink.KafkaSink.builder()
        .setBootstrapServers(ctx.bootstrap)
        .setRecordSerializer(serializer)
        .setDeliveryGuarantee(jvm.org.apache.flink.connector.base.DeliveryGuarantee.EXACTLY_ONCE)
        .setTransactionalIdPrefix(ctx.isolated(f"flowship.{ctx.job}.{uid}"))
        .setKafkaProducerConfig(_properties(props))
    )
    return _PyKafkaSink(builder.build())


def add_sink(stream: DataStream, sink: KafkaSink, ctx: KafkaContext) -> None:
    """Encode ``stream`` with ``sink``'s schema and write it exactly once to its topic."""
    rows = (
        stream.map(EncodeAvro(sink, ctx), output_type=PACKED)
        .uid(f"{sink.uid}.encode")
        .name(f"encode:{sink.uid}")
    )
    rows.sink_to(_kafka_sink(ctx, sink.uid, sink.topic, dict(sink.properties), side=True)).uid(
        ctx.isolated(sink.uid)
    ).name(f"kafka:{sink.topic}")
